"""Associative recall (Zoology's MQAR) and MAD-lab's in-context, noisy and fuzzy recall: each task's
docstring example, its labels against a reference that reads only the tokens, and its refusals."""
from __future__ import annotations

import itertools

import pytest
import torch
from task_examples import docstring_example

from bench.core.config import ConfigError, validate

import tasks.assoc_recall
import tasks.fuzzy_recall
import tasks.in_context_recall
import tasks.noisy_recall
from tasks import IGNORE_INDEX, TASKS
from tasks.key_value import KeyValueRecall, Segments, render

BATCH = 64


def stream(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_recall_tasks_are_registered():
    assert {"assoc_recall", "in_context_recall", "noisy_recall", "fuzzy_recall"} <= set(TASKS)


# Associative recall (MQAR)


def test_assoc_recall_docstring_example():
    example = docstring_example(tasks.assoc_recall)
    batch = tasks.assoc_recall.lay_out(
        keys=torch.tensor([[3, 6, 1]]), values=torch.tensor([[9, 12, 14]]), pairs=torch.tensor([3]),
        slots=torch.tensor([[0, 3, 1]]), fillers=torch.zeros(1, 16, dtype=torch.long),
    )  # fmt: skip
    assert batch.inputs[0].tolist() == example["inputs"] and batch.targets[0].tolist() == example["targets"]
    scored = batch.targets[0] != IGNORE_INDEX
    assert batch.slices["query_distance"][0][scored].tolist() == [6, 4, 10]


@pytest.mark.parametrize("options", [{}, {"seq_len": 128, "vocab_size": 64, "num_kv_pairs": 16, "min_kv_pairs": 4}])
def test_assoc_recall_queries_every_key_once_after_the_prefix(options):
    task = TASKS["assoc_recall"](**options)
    batch = task.sample(BATCH, stream())
    half = task.vocab_size // 2
    for inputs, targets, pairs, distance in zip(batch.inputs, batch.targets, batch.slices["num_kv_pairs"], batch.slices["query_distance"]):
        n = pairs[0].item()
        keys, values = inputs[0 : 2 * n : 2], inputs[1 : 2 * n : 2]
        assert task.min_kv_pairs <= n <= task.num_kv_pairs and (pairs == n).all()
        assert keys.unique().numel() == n and ((1 <= keys) & (keys < half)).all()
        assert values.unique().numel() == n and ((half <= values) & (values < task.vocab_size)).all()
        queries = (targets != IGNORE_INDEX).nonzero()[:, 0]
        assert len(queries) == n and (queries >= 2 * n).all() and ((queries - 2 * n) % 2 == 0).all()
        source = queries - distance[queries]
        assert torch.equal(inputs[queries], inputs[source]) and (source < 2 * n).all() and (source % 2 == 0).all()
        assert torch.equal(targets[queries], inputs[source + 1]), "the target is the value paired with the key"
        assert sorted(inputs[queries].tolist()) == sorted(keys.tolist()), "every key is queried once"


def test_assoc_recall_pair_counts_vary_only_with_min_kv_pairs():
    fixed = TASKS["assoc_recall"](seq_len=128, vocab_size=64, num_kv_pairs=16).sample(BATCH, stream())
    varied = TASKS["assoc_recall"](seq_len=128, vocab_size=64, num_kv_pairs=16, min_kv_pairs=4).sample(BATCH, stream())
    assert fixed.slices["num_kv_pairs"].unique().tolist() == [16]
    assert varied.slices["num_kv_pairs"][:, 0].unique().numel() > 8


@pytest.mark.parametrize("power_law_a", [0.01, 0.5, 1.0])
def test_assoc_recall_first_query_slot_follows_the_power_law(power_law_a):
    task = TASKS["assoc_recall"](seq_len=64, vocab_size=64, num_kv_pairs=4, power_law_a=power_law_a)
    batch = task.sample(20000, stream())
    first_key_query = ((batch.inputs[:, 8:] == batch.inputs[:, :1]) & (batch.targets[:, 8:] != IGNORE_INDEX)).float().argmax(1)
    slots = torch.arange(1, 29, dtype=torch.float64)  # (64 - 2 * 4) / 2 slots after the prefix
    expected = slots ** (power_law_a - 1) / (slots ** (power_law_a - 1)).sum()
    observed = torch.bincount(first_key_query // 2, minlength=28).double() / len(batch)
    assert (observed - expected).abs().max() < 0.015, (observed[:4], expected[:4])


def test_assoc_recall_fillers_are_random_or_zero():
    random = TASKS["assoc_recall"](seq_len=64, vocab_size=64).sample(BATCH, stream())
    zeros = TASKS["assoc_recall"](seq_len=64, vocab_size=64, random_fillers=False).sample(BATCH, stream())
    unscored_after_prefix = zeros.targets[:, 16:] == IGNORE_INDEX
    assert (zeros.inputs[:, 16:][unscored_after_prefix] == 0).all()
    assert random.inputs[:, 16:][random.targets[:, 16:] == IGNORE_INDEX].unique().numel() > 32


# MAD-lab's recall tasks, against a reference that parses the tokens


def reference_labels(task: KeyValueRecall, inputs: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Targets, query distances and value indices of one sequence from its tokens alone: a run of key
    tokens and the run of value tokens after it are a pair; the value of a key seen before is scored
    from the last key token on, and must be the value it had there."""
    runs, start = [], 0
    for kind, group in itertools.groupby(inputs, key=lambda t: "key" if t in task.keys else "value" if t in task.values else "other"):
        tokens = list(group)
        runs.append((kind, start, tuple(tokens)))
        start += len(tokens)
    targets, distance, value_index = [IGNORE_INDEX] * len(inputs), [0] * len(inputs), [0] * len(inputs)
    seen: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}
    for (kind, start, key), following in zip(runs, runs[1:] + [("other", len(inputs), ())]):
        if kind != "key":
            continue
        assert following[0] == "value", "a key is always followed by its value"
        value = following[2]
        if key in seen:
            assert seen[key][1] == value, "a key keeps its value within a sequence"
            for index, position in enumerate(range(start + len(key) - 1, start + len(key) + len(value) - 1)):
                targets[position], distance[position], value_index[position] = inputs[position + 1], start - seen[key][0], index
        seen[key] = (start, value)
    return targets, distance, value_index


RECALL_SETTINGS = [
    ("in_context_recall", {}),
    ("in_context_recall", {"seq_len": 64, "vocab_size": 64}),
    ("noisy_recall", {}),
    ("noisy_recall", {"seq_len": 64, "vocab_size": 20, "noise_vocab_size": 4, "noise_fraction": 0.7}),
    ("fuzzy_recall", {}),
    ("fuzzy_recall", {"seq_len": 61, "vocab_size": 12, "max_key_length": 2, "max_value_length": 4}),
]


@pytest.mark.parametrize("name, options", RECALL_SETTINGS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_recall_labels_match_a_reference_that_reads_only_the_tokens(name, options, split):
    task = TASKS[name](**options)
    batch = task.sample(BATCH, stream()) if split == "train" else task.evaluation_set("test", BATCH, stream())
    for row in range(BATCH):
        targets, distance, value_index = reference_labels(task, batch.inputs[row].tolist())
        assert batch.targets[row].tolist() == targets
        assert batch.slices["query_distance"][row].tolist() == distance
        assert batch.slices["value_index"][row].tolist() == value_index
        assert batch.targets[row, -2] != IGNORE_INDEX, "the closing pair repeats a key of the sequence"


@pytest.mark.parametrize("module, tokens, pairs", [
    (tasks.in_context_recall, {"vocab_size": 8}, [(2, 5), (0, 7), (2, 5), (3, 4), (0, 7), (2, 5)]),
    (tasks.noisy_recall, {"vocab_size": 12, "noise_vocab_size": 4}, [(2, 5), (9, 11), (2, 5), (0, 7), (10, 8), (0, 7)]),
    (tasks.fuzzy_recall, {"vocab_size": 16, "max_key_length": 2, "max_value_length": 2},
     [(3, 1, 9, 12), (5, 8), (1, 10, 7), (3, 1, 9, 12), (5, 8), (1, 10, 7)]),
])  # fmt: skip
def test_recall_docstring_examples(module, tokens, pairs):
    example = docstring_example(module)
    name = next(task.name for task in TASKS.values() if task.__module__ == module.__name__)
    task = TASKS[name](seq_len=len(example["inputs"]), **tokens)
    # the example's segments as the generator plans them: lengths, roles, the latest earlier occurrence
    latest_seen: dict[tuple[int, ...], int] = {}
    key_length, value_length, noise, repeated, previous = [], [], [], [], []
    for index, segment in enumerate(pairs):
        key = tuple(t for t in segment if t in task.keys)
        key_length.append(len(key) or 1)
        value_length.append(len(segment) - (len(key) or 1))
        noise.append(not key)
        repeated.append(bool(key) and key in latest_seen)
        previous.append(latest_seen.get(key, -1))
        if key:
            latest_seen[key] = index
    width = task.max_key_length + task.max_value_length
    tensor = lambda values, **kw: torch.tensor([values], **kw)  # noqa: E731
    segments = Segments(
        key_length=tensor(key_length), value_length=tensor(value_length), length=tensor([len(s) for s in pairs]),
        noise=tensor(noise), repeated=tensor(repeated), previous=tensor(previous),
        tokens=tensor([list(s) + [0] * (width - len(s)) for s in pairs]),
    )  # fmt: skip
    batch = render(segments, task.seq_len, task.pad_token)
    assert batch.inputs[0].tolist() == example["inputs"] and batch.targets[0].tolist() == example["targets"]
    assert reference_labels(task, example["inputs"])[0] == example["targets"]


def test_in_context_recall_is_pairs_from_split_halves():
    task = TASKS["in_context_recall"](seq_len=32, vocab_size=16)
    batch = task.sample(BATCH, stream())
    assert ((batch.inputs[:, 0::2] < 8).all() and (batch.inputs[:, 1::2] >= 8).all()), "keys 0-7 at even places, values 8-15 after"
    assert task.chance_accuracy == 1 / 8 and list(task.content_tokens) == list(range(16))


def test_noisy_recall_replaces_that_fraction_of_pairs_with_noise():
    task = TASKS["noisy_recall"](seq_len=256, vocab_size=32, noise_vocab_size=16, noise_fraction=0.6)
    batch = task.sample(256, stream())
    noise_slots = (batch.inputs[:, 0:-2:2] >= 16) & (batch.inputs[:, 1:-2:2] >= 16)
    assert abs(noise_slots.float().mean().item() - 0.6) < 0.02
    assert ((batch.inputs[:, 0:-2:2] >= 16) == (batch.inputs[:, 1:-2:2] >= 16)).all(), "noise comes in whole slots"
    assert (batch.targets[(batch.inputs >= 16)] == IGNORE_INDEX).all() and task.chance_accuracy == 1 / 8


def test_fuzzy_recall_trains_on_keys_of_every_length_and_evaluates_on_the_longest():
    task = TASKS["fuzzy_recall"]()

    def key_lengths(inputs: torch.Tensor) -> set[int]:
        return {len(list(group)) for row in inputs.tolist() for is_key, group in itertools.groupby(row, lambda t: t in task.keys) if is_key}

    assert key_lengths(task.sample(BATCH, stream()).inputs) == {1, 2, 3}
    assert key_lengths(task.evaluation_set("validation", BATCH, stream()).inputs) == {3}
    assert task.pad_token == 15 and list(task.content_tokens) == list(range(15)) and task.chance_accuracy == 1 / 8


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("assoc_recall", {"vocab_size": 17}, "task.vocab_size=17 is too small .* needs at least 18"),
        ("assoc_recall", {"seq_len": 60, "num_kv_pairs": 16}, "allowed: num_kv_pairs <= 15"),
        ("assoc_recall", {"num_kv_pairs": 8, "min_kv_pairs": 9}, "allowed: min_kv_pairs <= num_kv_pairs"),
        ("in_context_recall", {"seq_len": 127}, "must be even"),
        ("in_context_recall", {"vocab_size": 3}, "needs at least 4"),
        ("in_context_recall", {"seq_len": 2}, "allowed: seq_len >= 4"),
        ("noisy_recall", {"vocab_size": 19}, "needs at least 20"),
        ("fuzzy_recall", {"vocab_size": 12, "max_value_length": 6}, "needs at least 13"),
        ("fuzzy_recall", {"seq_len": 11}, "allowed: seq_len >= 12"),
    ],
)
def test_impossible_recall_options_are_refused_with_the_limit(name, options, message):
    with pytest.raises(ValueError, match=message):
        TASKS[name](**options)


@pytest.mark.parametrize("override, message", [
    ("task.power_law_a=0", r"task.power_law_a=0.0 is out of range; allowed: \(0, 1\]"),
    ("task.num_kv_pairs=0", "task.num_kv_pairs=0 is out of range; allowed: >= 1"),
])  # fmt: skip
def test_assoc_recall_ranges_are_checked_by_the_config(make_config, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config("task=assoc_recall", override))

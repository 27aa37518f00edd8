"""The hand-coded induction circuit at small sizes: its measured targets, the ablations that prove
it is a real circuit, its head scores in a run's record, and the configurations it refuses.
The same measurements at full size: `python -m bench.experiments.evaluate_handcoded`."""
from __future__ import annotations

import pytest
import torch

import json

from bench.core.config import ConfigError, validate
from bench.core.job import run
from bench.core.model import Transformer
from bench.experiments.evaluate_handcoded import LARGE_VOCABULARY, accuracy, build, compose_config, previous_token_mass, repeat_probe
from variants import VARIANTS
from variants.rope import Rotary

ONE_HEAD = ("model.n_heads=1", "train.batch_size=4", "train.eval_batches=2")


@pytest.mark.parametrize("context", [16, 1024])
def test_previous_token_head_puts_99_percent_on_the_previous_token_at_every_position(context):
    cfg = compose_config("task=induction", "task.layout=repeat", "task.vocab_size=5", "model.d_model=16", f"model.max_seq_len={context}", f"task.seq_len={context}", *ONE_HEAD)
    assert previous_token_mass(cfg) >= 0.99


def test_induction_with_random_codes_for_a_gpt2_sized_vocabulary():
    assert accuracy(repeat_probe(64, *LARGE_VOCABULARY, *ONE_HEAD)) >= 0.99


def test_one_hot_codes_copy_perfectly():
    cfg = repeat_probe(64, "task.vocab_size=64", "model.d_model=193", *ONE_HEAD)
    assert accuracy(cfg) == 1.0


@pytest.mark.slow  # 3 to 4 s: keeps the default suite under 3 minutes; CI runs it with -m slow
def test_induction_task_at_random_gaps():
    assert accuracy(compose_config(*LARGE_VOCABULARY, "task.seq_len=200", "train.batch_size=8", "train.eval_batches=2")) >= 0.95


@pytest.mark.parametrize("ablation", ["layer0_ov", "layer1_ov"])
def test_ablating_either_head_drops_induction_to_chance(ablation):
    cfg = repeat_probe(32, "task.vocab_size=1000", "model.d_model=49", *ONE_HEAD, f"variant.ablate={ablation}")
    assert accuracy(cfg) <= 0.02


@torch.no_grad()
def test_ablating_layer_1_output_leaves_its_attention_unchanged():
    intact, ablated = (build(repeat_probe(32, "task.vocab_size=1000", "model.d_model=49", "model.n_heads=1", f"variant.ablate={a}")) for a in ("none", "layer1_ov"))
    tokens = torch.randint(1, 1000, (2, 65), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(intact.forward_with_attention(tokens)[1], ablated.forward_with_attention(tokens)[1])


@pytest.mark.slow  # 3 to 4 s: keeps the default suite under 3 minutes; CI runs it with -m slow
def test_a_run_records_zero_steps_and_the_head_scores_of_the_circuit(make_config, tmp_path):
    cfg = make_config("variant=handcoded_induction", "task=induction", "train.progress=false")
    record = run(cfg, tmp_path, single_run=True, overrides=[])
    assert record["status"] == "completed" and record["steps_run"] == 0 and record["trained"] is False
    assert record["metrics"]["test"]["accuracy"] >= 0.95
    rows = json.loads((tmp_path / "analyses" / "head_scores.json").read_text())["rows"]
    scores = {(row["head"], row["pattern"]): row["score"] for row in rows}
    assert scores["L0H0", "previous_token"] >= 0.99
    # the mul convention divides by all attention off BOS and the diagonal, the first copy's too, where
    # the circuit has no match and spreads its attention: about 0.6 for a perfect induction head
    assert scores["L1H0", "induction"] >= 0.6
    assert max(score for (head, pattern), score in scores.items() if pattern == "induction" and head != "L1H0") < 0.1


def test_finetuning_starts_from_the_construction_and_trains(make_config, tmp_path):
    cfg = make_config(
        "variant=handcoded_induction", "variant.finetune=true", "task=induction", "train.steps=2",
        "train.target_accuracy=null", "train.progress=false", *ONE_HEAD,
    )  # fmt: skip
    record = run(cfg, tmp_path, single_run=True, overrides=[])
    assert record["steps_run"] == 2 and record["curve"][0]["test_accuracy"] >= 0.95


def test_float32_predicts_as_float64():
    model = build(repeat_probe(64, *LARGE_VOCABULARY, "model.n_heads=1"))
    tokens = torch.randint(1, 50257, (2, 129), generator=torch.Generator().manual_seed(0))
    tokens[:, 65:] = tokens[:, 1:65]
    with torch.no_grad():
        single = model(tokens).argmax(-1)
        double = model.double()(tokens).argmax(-1)
    assert torch.equal(single[:, 65:], double[:, 65:])


def test_random_codes_follow_the_seed_and_one_hot_codes_are_fixed():
    def codes(vocab_size, seed):
        return build(compose_config("task=induction", f"task.vocab_size={vocab_size}", f"seed={seed}")).embed.weight

    assert torch.equal(codes(64, 0), codes(64, 0)) and not torch.equal(codes(64, 0), codes(64, 1))
    assert torch.equal(codes(16, 0), codes(16, 1))


def test_rotary_frequencies_are_those_of_the_rotary_embedding():
    variant = VARIANTS["handcoded_induction"](16, 1, 32, head_dim=16)
    torch.testing.assert_close(Rotary(16, 32).rotation[1].angle().double(), variant.frequencies, rtol=1e-6, atol=1e-6)


REFUSED = [
    (["model.n_layers=1"], r"model.n_layers=1: the circuit needs a first layer and an induction layer; allowed: n_layers >= 2"),
    (["model.mlp=true"], r"model.mlp=true: the hand-coded circuit is attention-only"),
    (["model.layer_norm=true"], r"model.layer_norm=true"),
    (["model.learned_positions=true"], r"model.learned_positions=true: this circuit takes its positions from RoPE; allowed: model.learned_positions=false"),
    (["model.d_model=3", "model.n_heads=1"], r"model.d_model=3 leaves no room for token codes.*d_model >= 4"),
    (["variant.head_dim=16"], r"variant.head_dim=16 cannot hold the k=21 code dimensions.*head_dim >= 21"),
    (["variant.head_dim=33"], r"allowed: an even head_dim"),
    (["variant.alpha=5"], r"previous-token head puts only 0\.\d+ .*it needs >= 0.99: raise variant.alpha"),
    (["model.max_seq_len=4096"], r"model.max_seq_len=4096 is longer than the induction match reaches.*it holds over gaps up to 3174 but the context needs 4095"),
    (["variant.rope_base=100"], r"longer than the induction match reaches"),
    (["variant.ablate=layer2_qk"], r"variant.ablate='layer2_qk' is unknown; allowed: none, layer0_ov, layer1_ov"),
    (["variant.gamma=0"], r"variant.gamma=0.0 is out of range; allowed: > 0"),
    (["variant.beta=5"], r"variant.beta=5.0 is too small for the induction match to outweigh every other key at every gap of model.max_seq_len=512; allowed: variant.beta >= \d+\.\d$"),
    (["variant.rope_base=1"], r"variant.rope_base=1.0 is out of range; allowed: > 1"),
]


@pytest.mark.parametrize("overrides, message", REFUSED)
def test_a_configuration_the_construction_cannot_honour_is_refused_with_its_limit(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message) as refused:
        validate(make_config("variant=handcoded_induction", "task=induction", *overrides))
    assert "\n" not in str(refused.value)


def test_a_vocabulary_of_one_token_is_refused():
    with pytest.raises(ValueError, match="vocabulary of one token"):
        Transformer(VARIANTS["handcoded_induction"], {}, vocab_size=1, n_layers=2, d_model=64, n_heads=4, max_seq_len=64)

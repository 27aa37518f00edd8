"""The Fourier analysis on hand-made embeddings and neurons whose answers are known."""
from __future__ import annotations

import math

import pytest
import torch

from analyses.base import TrainedRun
from analyses.fourier import Fourier, explained_variance, fourier_basis, frequency_norms, key_frequencies
from bench.core.config import build_model, build_task

P = 23


def waves(p: int, frequency: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(p, dtype=torch.float64)
    return torch.cos(2 * math.pi * frequency * x / p), torch.sin(2 * math.pi * frequency * x / p)


def embedding_of(frequencies: dict[int, float], d_model: int = 16, seed: int = 0) -> torch.Tensor:
    """(P, d_model): each frequency's cos and sin written along random directions, at that amplitude."""
    generator = torch.Generator().manual_seed(seed)
    embedding = torch.zeros(P, d_model, dtype=torch.float64)
    for frequency, amplitude in frequencies.items():
        directions = torch.randn(2, d_model, generator=generator, dtype=torch.float64)
        cos, sin = waves(P, frequency)
        embedding += amplitude * (cos[:, None] * directions[0] + sin[:, None] * directions[1])
    return embedding


@pytest.mark.parametrize("p", [7, 8, 23])
def test_the_basis_is_orthonormal_with_one_or_two_rows_per_frequency(p):
    basis, frequencies = fourier_basis(p)
    assert torch.allclose(basis @ basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    assert frequencies.tolist()[:3] == [0, 1, 1] and frequencies.max() == p // 2


def test_frequency_norms_keep_the_embedding_norm():
    embedding = torch.randn(P, 16, dtype=torch.float64)
    assert math.isclose((frequency_norms(embedding) ** 2).sum().item(), (embedding**2).sum().item(), rel_tol=1e-10)


def test_an_embedding_of_two_frequencies_has_exactly_those_two_as_key_frequencies():
    embedding = embedding_of({3: 1.0, 7: 0.6}) + 5.0  # a common offset lives at frequency 0 and is not a key
    norms = frequency_norms(embedding)
    assert key_frequencies(norms, 0.9) == [3, 7]
    energy = norms[1:] ** 2
    assert (energy[[2, 6]].sum() / energy.sum()).item() == pytest.approx(1.0, abs=1e-12)


def test_key_frequencies_are_the_fewest_that_carry_the_share_above_a_noise_floor():
    generator = torch.Generator().manual_seed(1)
    embedding = embedding_of({2: 1.0, 5: 0.9, 9: 0.8, 11: 0.7}) + 0.01 * torch.randn(P, 16, generator=generator, dtype=torch.float64)
    norms = frequency_norms(embedding)
    assert key_frequencies(norms, 0.9) == [2, 5, 9, 11]
    assert key_frequencies(norms, 0.5) == [2, 5], "the two largest already carry half"


def grid(function) -> torch.Tensor:
    """A neuron's activation on the grid [a, b], as (P, P, 1)."""
    a, b = torch.meshgrid(torch.arange(P, dtype=torch.float64), torch.arange(P, dtype=torch.float64), indexing="ij")
    return function(2 * math.pi * a / P, 2 * math.pi * b / P)[..., None]


@pytest.mark.parametrize(
    "neuron",
    [
        lambda a, b: torch.cos(4 * a) * torch.cos(4 * b),
        lambda a, b: torch.cos(4 * (a + b)) + 0.5 * torch.sin(4 * a) + 2.0,
        lambda a, b: torch.sin(4 * a) * torch.cos(4 * b) - torch.cos(4 * b),
    ],
)
def test_a_neuron_made_of_one_frequency_is_fully_explained_there_and_nowhere_else(neuron):
    explained = explained_variance(grid(neuron))[0]
    assert explained[4].item() == pytest.approx(1.0, abs=1e-10)
    assert explained[[k for k in range(1, P // 2 + 1) if k != 4]].abs().max() < 1e-10


def test_a_neuron_of_two_frequencies_splits_its_variance_between_them():
    explained = explained_variance(grid(lambda a, b: torch.cos(2 * a) * torch.cos(2 * b) + torch.cos(6 * a) * torch.cos(6 * b)))[0]
    assert explained[2].item() == pytest.approx(0.5, abs=1e-10) and explained[6].item() == pytest.approx(0.5, abs=1e-10)


def test_a_relu_of_a_wave_is_mostly_but_not_wholly_explained_at_its_frequency():
    explained = explained_variance(grid(lambda a, b: torch.relu(torch.cos(3 * (a + b)))))[0]
    assert 0.7 < explained[3].item() < 0.99, "the ReLU's harmonics lie at 2k, 4k, ..."


def test_a_constant_neuron_has_no_fraction():
    activations = torch.cat([grid(lambda a, b: torch.cos(a)), torch.full((P, P, 1), 3.0, dtype=torch.float64)], dim=2)
    explained = explained_variance(activations)
    assert torch.isnan(explained[1]).all() and not torch.isnan(explained[0]).any()


def trained_run(make_config, *overrides) -> TrainedRun:
    cfg = make_config("task=modular_addition", "task.p=11", "task.vocab_size=12", "model.n_layers=1", "model.mlp=true",
                      "model.max_seq_len=3", *overrides)  # fmt: skip
    return TrainedRun(model=build_model(cfg).eval(), task=build_task(cfg), config=cfg, device=torch.device("cpu"),
                      stream=lambda name: torch.Generator(), evaluate=lambda batch: {}, make_task=lambda **changes: build_task(cfg))  # fmt: skip


def test_it_measures_the_embedding_and_every_neuron_of_a_modular_addition_model(make_config):
    run = trained_run(make_config, "model.mlp_width=24")
    rows = Fourier().measure(run).rows
    embedding = [row for row in rows if row["kind"] == "embedding"]
    neurons = [row for row in rows if row["kind"] == "neuron"]
    assert [row["frequency"] for row in embedding] == list(range(6)) and len(neurons) == 24
    keys = {row["frequency"] for row in embedding if row["key"]}
    assert all(row["frequency"] in keys and 0 <= row["explained"] <= row["best_explained"] + 1e-12 <= 1 + 1e-12 for row in neurons)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (("task.operation=mul",), "discrete logarithm"),
        (("model.mlp=false",), "no MLP"),
    ],
)
def test_it_says_why_it_does_not_apply(make_config, overrides, reason):
    assert reason in Fourier().applies(trained_run(make_config, *overrides))
    assert Fourier().applies(trained_run(make_config, "task.operation=sub")) is None

"""Hand-coded induction circuit: a two-layer RoPE transformer whose weights are set by
construction, not training. Every number that reaches the logits is computed by the model's own
forward pass (embedding, two attention layers, unembedding), so ablating a head changes the answer.

Residual stream, k = (d_model - 1) // 3 code dimensions (any dimensions left over stay zero):

    [ bias (1) | T: current-token code (k) | P: previous-token code (k) | O: output code (k) ]

Token codes u_t in R^k are one-hot when vocab <= k, otherwise random unit vectors (overlap about
1/sqrt(k)) drawn from torch's global RNG, so the run's seed fixes them.

    W_E[t] = e_bias + T u_t        embedding: a constant 1 and the token's code
    W_U[t] = O u_t                 unembedding: logit_t = u_t . (output part of the stream)

Every head has its own width d (``head_dim``, independent of d_model / n_heads); RoPE rotates
pair (2i, 2i+1) at position m by m theta_i, theta_i = rope_base^(-2i/d), so that
(R_m q) . (R_n k) = q^T R_(n-m) k; scores are divided by sqrt(d), which the sqrt(d) below cancels,
so alpha and beta are score margins. Head 0 of layers 0 and 1 carries the circuit. E places R^k
on a head's first k dimensions (the value of both heads is E T^T x: the current token's code).

Layer 0, previous-token head: a constant key, and a query that is the key turned back one step.

    W_K = c e_bias^T,   c = sum_i sqrt(w_i) e_(2i),   sum_i w_i = 1
    W_Q = alpha sqrt(d) R_(-1) W_K
    score(m, n) = alpha sum_i w_i cos((m - n - 1) theta_i)        peak alpha exactly at n = m - 1
    W_V = E T^T,   W_O = P E^T                                     position m gets u_(t_(m-1)) in P

    Half of w sits on the fastest pair (theta_0 = 1 rad: 1 - cos 1 = 0.46 separates the
    neighbours); the other half is spread over the pairs that turn at least half a circle across
    the context, which stop the fast pair from re-aligning far away (44 is nearly 7 turns of
    2 pi). Slower pairs would only add a constant.

Layer 1, induction head by K-composition. S places R^k on the head's k slowest dimensions (the
ceil(k/2) slowest rotary pairs).

    W_Q = beta sqrt(d) S T^T          query: my own token
    W_K = S P^T                       key: the token before you, written there by layer 0
    score(m, n) = beta u_(t_m)^T S^T R_(n-m) S u_(t_(n-1))
                = beta C(m - n) where t_(n-1) = t_m, crosstalk of order beta / sqrt(k) elsewhere
    W_V = E T^T,   W_O = gamma O E^T  the attended token's code, read out as its logit gamma

    Only K-composition is used (Q- and V-composition are exactly zero), and the OV circuit
    gamma U U^T copies: the copied token always gets the largest logit.

Why the slowest pairs: the match signal C(G) at gap G is the mean of cos(G theta_i) over the code's
dimensions. A fast pair turns many times over a long gap and averages a match away; a slow pair
barely turns, so the match survives the distance. It must beat the crosstalk of up to G
competitors, about sqrt(2 ln G / k) for random codes (for one-hot codes only a pair partner
leaks, by |sin(G theta_i)|). The largest gap where it still does is the circuit's reach; it grows
with rope_base and head_dim, and must cover the context.
beta sets the margin: the match must outweigh all other keys together even if every one of them
had the worst crosstalk, beta (C(G) - X(G)) >= ln(context - 1) at every gap G, X the crosstalk
bound; a smaller beta is refused with the least one that works (about 28 at the default sizes).

Spare heads keep their random Q/K/V but write nothing (their columns of W_O are zero), and so do
layers after the first two, so fine-tuning (``finetune=true``) can recruit them.
``ablate=layer0_ov`` / ``layer1_ov`` zeroes that layer's W_O: the proof that the circuit is real.
A configuration the construction cannot honour is refused with a ValueError that states the limit.
Float32 is enough: every score stays within +-alpha or +-beta. The measured targets, at full size:
``python -m bench.experiments.evaluate_handcoded``.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor, nn

from plugin import POSITIVE, ROPE_BASE, Range
from variants import naive
from variants.construction import ConstructedAttention, check_model_family, token_codes
from variants.rope import Rotary, rotary_frequencies

# The previous-token head must put at least this much attention on position m - 1 at every m.
PREVIOUS_TOKEN_MASS = 0.99
BIAS = 0


# A head as wide as the widest model (model.d_model's bound); the construction checks its evenness.
HEAD_DIM = Range(2, 65536, reason="a head no wider than the widest model")


class HandcodedInductionAttention(ConstructedAttention):
    name = "handcoded_induction"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        *,
        head_dim: Annotated[int, HEAD_DIM] = 256,
        rope_base: Annotated[float, ROPE_BASE] = 10000.0,
        alpha: Annotated[float, POSITIVE] = 50.0,
        beta: Annotated[float, POSITIVE] = 50.0,
        gamma: Annotated[float, POSITIVE] = 20.0,
        finetune: bool = False,
        ablate: str = "none",
    ) -> None:
        super().__init__(d_model, n_heads, max_seq_len, head_dim, finetune, ablate)
        self.code_dims = (d_model - 1) // 3
        if self.code_dims < 1:
            raise ValueError(
                f"model.d_model={d_model} leaves no room for token codes: the stream needs 1 + 3k "
                "dimensions (bias, current, previous and output code) with k >= 1; allowed: d_model >= 4"
            )
        if head_dim % 2 != 0 or head_dim < self.code_dims:
            raise ValueError(
                f"variant.head_dim={head_dim} cannot hold the k={self.code_dims} code dimensions of "
                f"model.d_model={d_model} in rotary pairs; allowed: an even head_dim >= {self.code_dims}"
            )
        self.rope_base = rope_base
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.rotary = Rotary(head_dim, max_seq_len, rope_base)
        self.frequencies = rotary_frequencies(head_dim, rope_base)

    def rotate(self, heads: Tensor) -> Tensor:
        return self.rotary(heads)

    def reference(self, x: Tensor) -> Tensor:
        """Causal softmax attention in heads of width head_dim, with RoPE, naively in float64."""
        return naive.dot_product(x, self.query.weight, self.key.weight, self.value.weight, self.out.weight, self.n_heads, self.rotary.base)

    def rotary_queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q, k = (self.split_heads(projection(x)) for projection in (self.query, self.key))
        return q, k, self.rotary(q), self.rotary(k)

    # The construction ---------------------------------------------------------------------------

    @property
    def current_code(self) -> slice:
        return slice(1, 1 + self.code_dims)

    @property
    def previous_code(self) -> slice:
        return slice(1 + self.code_dims, 1 + 2 * self.code_dims)

    @property
    def output_code(self) -> slice:
        return slice(1 + 2 * self.code_dims, 1 + 3 * self.code_dims)

    def build(self, model: nn.Module, layer: int) -> None:
        if layer == 0:
            self.set_codes(model)
            self.set_previous_token_head()
        elif layer == 1:
            self.set_induction_head()

    def check_limits(self, model: nn.Module) -> None:
        check_model_family(model, learned_positions=False)
        vocab_size = model.embed.num_embeddings
        if vocab_size < 2:
            raise ValueError(f"task.vocab_size={vocab_size}: a vocabulary of one token leaves nothing to copy; allowed: vocab_size >= 2")
        context = self.max_seq_len
        mass = worst_previous_token_mass(self.previous_token_weights(), self.frequencies, self.alpha, context)
        if mass < PREVIOUS_TOKEN_MASS:
            raise ValueError(
                f"the previous-token head puts only {mass:.3f} of its attention on the previous token "
                f"somewhere in a context of model.max_seq_len={context} (variant.alpha={self.alpha}, "
                f"variant.head_dim={self.head_dim}, variant.rope_base={self.rope_base}); it needs >= "
                f"{PREVIOUS_TOKEN_MASS}: raise variant.alpha or variant.head_dim"
            )
        one_hot = vocab_size <= self.code_dims
        code_frequencies = self.frequencies[self.slow_dims() // 2]
        reach = match_reach(code_frequencies, self.code_dims, one_hot, context - 1)
        if reach < context - 1:
            codes = "one-hot codes" if one_hot else (
                f"random codes of a vocabulary of {vocab_size}, which no RoPE setting tells apart over "
                f"gaps beyond e^(k/2) = {math.exp(self.code_dims / 2):.0f}"
            )
            raise ValueError(
                f"model.max_seq_len={context} is longer than the induction match reaches: it holds over gaps "
                f"up to {reach} but the context needs {context - 1} (variant.rope_base={self.rope_base}, "
                f"variant.head_dim={self.head_dim}, k={self.code_dims} code dimensions from "
                f"model.d_model={self.d_model} holding {codes}); raise variant.rope_base, variant.head_dim "
                "or model.d_model, or shorten model.max_seq_len"
            )
        needed = beta_needed(code_frequencies, self.code_dims, one_hot, context - 1)
        if self.beta < needed:
            raise ValueError(
                f"variant.beta={self.beta} is too small for the induction match to outweigh every other key at every "
                f"gap of model.max_seq_len={context}; allowed: variant.beta >= {needed:.1f}"
            )

    def previous_token_weights(self) -> Tensor:
        """w_i: half on the fastest pair, half over the others that turn >= half a circle in the context."""
        turning = self.frequencies * self.max_seq_len >= math.pi
        turning[0] = False
        weights = torch.zeros_like(self.frequencies)
        if turning.any():
            weights[turning] = 0.5 / turning.sum()
        weights[0] = 1 - weights.sum()
        return weights

    def slow_dims(self) -> Tensor:
        """The head dimensions S places the code on: the last k, i.e. the slowest rotary pairs."""
        return torch.arange(self.head_dim - self.code_dims, self.head_dim, device="cpu")

    def set_codes(self, model: nn.Module) -> None:
        codes = token_codes(model.embed.num_embeddings, self.code_dims)
        model.embed.weight.zero_()
        model.embed.weight[:, BIAS] = 1
        model.embed.weight[:, self.current_code] = codes
        model.unembed.weight.zero_()
        model.unembed.weight[:, self.output_code] = codes

    def set_previous_token_head(self) -> None:
        key = torch.zeros(self.head_dim, dtype=torch.float64)
        key[0::2] = self.previous_token_weights().sqrt()
        query = torch.zeros_like(key)  # R_(-1) key: each pair turned back by theta_i
        query[0::2] = key[0::2] * self.frequencies.cos()
        query[1::2] = -key[0::2] * self.frequencies.sin()
        device = self.key.weight.device
        self.cleared_head_rows(self.key)[:, BIAS] = key.to(device)
        self.cleared_head_rows(self.query)[:, BIAS] = (self.alpha * math.sqrt(self.head_dim) * query).to(device)
        self.read_and_write(self.current_code, self.previous_code, scale=1.0)  # position m gets u_(t_(m-1)) in P

    def set_induction_head(self) -> None:
        identity = torch.eye(self.code_dims, device=self.query.weight.device)
        slow = self.slow_dims().to(identity.device)
        self.cleared_head_rows(self.query)[slow, self.current_code] = self.beta * math.sqrt(self.head_dim) * identity
        self.cleared_head_rows(self.key)[slow, self.previous_code] = identity
        self.read_and_write(self.current_code, self.output_code, scale=self.gamma)


def worst_previous_token_mass(weights: Tensor, frequencies: Tensor, alpha: float, context: int) -> float:
    """Least attention the previous-token head puts on position m - 1 over all m in 1..context-1.

    Its keys are constant, so query m sees scores alpha sum_i w_i cos((d - 1) theta_i) at the
    distances d = 0..m: the same numbers for every sequence.
    """
    distance = torch.arange(context, dtype=torch.float64, device="cpu")
    score = (weights * torch.cos((distance[:, None] - 1) * frequencies)).sum(-1)
    relative = torch.exp(alpha * (score - 1))  # <= 1: the peak is alpha at d = 1
    return (relative[1] / relative.cumsum(0)[1:]).min().item() if context > 1 else 1.0


def match_signal_and_crosstalk(code_frequencies: Tensor, code_dims: int, one_hot: bool, longest_gap: int) -> tuple[Tensor, Tensor]:
    """At every gap G = 1..longest_gap: the induction match's score per unit beta, C(G), and the
    largest score per unit beta another key can reach, X(G).

    code_frequencies: theta of the rotary pair of each code dimension. Random codes: C is the mean
    of cos(G theta), X = sqrt(2 ln G / k), the largest overlap among G random codes. One-hot codes:
    C is each code's cos(G theta) (the worst), X its pair partner's |sin(G theta)|."""
    gap = torch.arange(1, longest_gap + 1, dtype=torch.float64, device="cpu")
    angle = gap[:, None] * code_frequencies
    if one_hot:
        return angle.cos().min(-1).values, angle.sin().abs().max(-1).values
    return angle.cos().mean(-1), (2 * gap.log() / code_dims).sqrt()


def match_reach(code_frequencies: Tensor, code_dims: int, one_hot: bool, longest_gap: int) -> int:
    """Largest gap G <= longest_gap up to which the induction match beats its crosstalk at every gap."""
    signal, crosstalk = match_signal_and_crosstalk(code_frequencies, code_dims, one_hot, longest_gap)
    fails = (signal <= crosstalk).nonzero()
    return int(fails[0]) if len(fails) else longest_gap


def beta_needed(code_frequencies: Tensor, code_dims: int, one_hot: bool, longest_gap: int) -> float:
    """The least beta for which, at every gap, the match outweighs all other keys together even if
    each had the worst crosstalk: beta (C(G) - X(G)) >= ln(longest_gap)."""
    signal, crosstalk = match_signal_and_crosstalk(code_frequencies, code_dims, one_hot, longest_gap)
    return math.log(max(longest_gap, 2)) / (signal - crosstalk).min().item()

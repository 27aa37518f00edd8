"""Hand-coded induction by Q-composition: a duplicate-token head, then an induction head whose
query carries a position (the illustrated walkthrough's second diagram, after Elhage et al. 2021).

Why not with RoPE. In an attention-only RoPE model nothing in the stream depends on position:
embeddings are position-free and values are not rotated, so a head's output at i is
sum_j a_ij W_O W_V x_j, which carries position only through which j were attended. Layer 0's
duplicate head, attending the earlier copy j of token i, writes W_O W_V x_j: the token again,
never where it was. For Q-composition layer 1's query at i must encode where j was, so that
q_i^T R_(m-i) k_m peaks at m = j + 1 for every gap i - j; with no positional content in x_i its
query is the same whatever the gap, and a fixed rotation cannot follow a varying offset. (RoPE
gives K-composition instead: see handcoded_induction.) So this circuit takes its positions from
constructed position embeddings (``model.learned_positions=true``), the only other way the model
family has: it is built with absolute positions, and refuses to be built without them.

Stream, k token-code dimensions and p = 2P position dimensions (P = ceil(max_seq_len / 2)):

    [ T: token code (k) | P: position code (p) | D: copied position (p) | O: output code (k) ]

    W_E[t] = T u_t,   W_P[m] = P p_m,   W_U[t] = O u_t
    p_m = P^(-1/2) [cos(m w_j), sin(m w_j)]_j,   w_j = pi (j + 1/2) / P,   j = 0..P-1

so p_m . p_n = 0 for 0 < |m - n| < 2P (a Dirichlet sum over the half-integer frequencies): the
positions of the context are orthonormal, and turning pair j by w_j maps p_m to p_(m+1) exactly.
Heads have width k + p; scores are divided by sqrt(k + p), which the construction's sqrt cancels.

Layer 0, duplicate-token head: my token against yours, minus my own position against yours.

    q_i = [beta_d u_(t_i); -lambda p_i],   k_j = [u_(t_j); p_j]
    score(i, j) = beta_d u_(t_i) . u_(t_j) - lambda p_i . p_j
                = beta_d at an earlier copy of my token, beta_d - lambda at myself, crosstalk elsewhere
    W_V = P-read, W_O = D-write       position i gets D_i = p_j, where its token was before

Layer 1, induction head by Q-composition: my copied position, turned one step on, against yours.

    q_i = beta_s R_w D_i = beta_s p_(j+1),   k_m = p_m
    score(i, m) = beta_s p_(j+1) . p_m = beta_s exactly at m = j + 1, 0 at every other m
    W_V = T-read, W_O = gamma O-write    the token after the earlier copy, read out as its logit

Only Q-composition is used: layer 0 writes D, which only layer 1's queries read (K- and
V-composition are exactly zero). ``ablate=layer0_ov`` or ``layer1_ov`` drops it to chance.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor, nn

from plugin import POSITIVE
from variants import naive
from variants.construction import ConstructedAttention, check_model_family, token_codes


class HandcodedQInductionAttention(ConstructedAttention):
    name = "handcoded_q_induction"
    required_config = ("model.learned_positions=true", "model.max_seq_len=64", "model.d_model=192",
                       "analysis.length_generalisation.factors=[1]")  # fmt: skip

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        *,
        beta_duplicate: Annotated[float, POSITIVE] = 20.0,
        self_penalty: Annotated[float, POSITIVE] = 40.0,
        beta_shift: Annotated[float, POSITIVE] = 20.0,
        gamma: Annotated[float, POSITIVE] = 20.0,
        finetune: bool = False,
        ablate: str = "none",
    ) -> None:
        self.position_pairs = math.ceil(max_seq_len / 2)
        self.position_dims = 2 * self.position_pairs
        self.code_dims = (d_model - 2 * self.position_dims) // 2
        if d_model < self.least_d_model(max_seq_len):
            raise ValueError(
                f"model.d_model={d_model} leaves no room for token codes beside two position codes of "
                f"{self.position_dims} dimensions (one per position of model.max_seq_len={max_seq_len}); "
                f"allowed: d_model >= {self.least_d_model(max_seq_len)}, or a shorter model.max_seq_len"
            )
        super().__init__(d_model, n_heads, max_seq_len, self.code_dims + self.position_dims, finetune, ablate)
        self.beta_duplicate, self.self_penalty, self.beta_shift, self.gamma = beta_duplicate, self_penalty, beta_shift, gamma
        self.frequencies = math.pi * (torch.arange(self.position_pairs, dtype=torch.float64, device="cpu") + 0.5) / self.position_pairs

    @classmethod
    def least_d_model(cls, max_seq_len: int) -> int:
        """Two position codes of p = 2 ceil(max_seq_len / 2) dimensions, and one dimension each for the
        token and output codes."""
        return 2 * 2 * math.ceil(max_seq_len / 2) + 2

    def reference(self, x: Tensor) -> Tensor:
        """Causal softmax attention in heads of width k + p, no rotation, naively in float64."""
        return naive.dot_product(x, self.query.weight, self.key.weight, self.value.weight, self.out.weight, self.n_heads, None)

    @property
    def token_code(self) -> slice:
        return slice(0, self.code_dims)

    @property
    def position_code(self) -> slice:
        return slice(self.code_dims, self.code_dims + self.position_dims)

    @property
    def copied_position(self) -> slice:
        return slice(self.code_dims + self.position_dims, self.code_dims + 2 * self.position_dims)

    @property
    def output_code(self) -> slice:
        return slice(self.code_dims + 2 * self.position_dims, 2 * self.code_dims + 2 * self.position_dims)

    def check_limits(self, model: nn.Module) -> None:
        check_model_family(model, learned_positions=True)
        vocab_size = model.embed.num_embeddings
        if vocab_size < 2:
            raise ValueError(f"task.vocab_size={vocab_size}: a vocabulary of one token leaves nothing to copy; allowed: vocab_size >= 2")
        crosstalk = 0.0 if vocab_size <= self.code_dims else math.sqrt(2 * math.log(self.max_seq_len) / self.code_dims)
        if crosstalk >= 1:
            raise ValueError(
                f"random codes of a vocabulary of {vocab_size} in k={self.code_dims} dimensions (from model.d_model="
                f"{self.d_model}) cannot tell an earlier copy from other tokens over model.max_seq_len={self.max_seq_len}; "
                "raise model.d_model or shorten model.max_seq_len"
            )
        needed = math.log(self.max_seq_len) / (1 - crosstalk)
        if self.beta_duplicate < needed:
            raise ValueError(f"variant.beta_duplicate={self.beta_duplicate} cannot single out the earlier copy among "
                             f"model.max_seq_len={self.max_seq_len} keys; allowed: variant.beta_duplicate >= {needed:.1f}")  # fmt: skip
        if self.self_penalty <= self.beta_duplicate * (1 + crosstalk):
            raise ValueError(f"variant.self_penalty={self.self_penalty} must push a token off itself below every other key; "
                             f"allowed: variant.self_penalty > {self.beta_duplicate * (1 + crosstalk):.1f}")  # fmt: skip
        if self.beta_shift < math.log(self.max_seq_len):
            raise ValueError(f"variant.beta_shift={self.beta_shift} cannot single out one of model.max_seq_len={self.max_seq_len} "
                             f"positions; allowed: variant.beta_shift >= {math.log(self.max_seq_len):.1f}")  # fmt: skip

    def position_codes(self, length: int) -> Tensor:
        """p_m for m < length, (length, p): orthonormal over the context."""
        angles = torch.arange(length, dtype=torch.float64)[:, None] * self.frequencies
        return torch.stack([angles.cos(), angles.sin()], dim=-1).flatten(1) / math.sqrt(self.position_pairs)

    def shift(self) -> Tensor:
        """R_w, (p, p): turns pair j by w_j, so that R_w p_m = p_(m+1)."""
        cos, sin = self.frequencies.cos(), self.frequencies.sin()
        rotation = torch.zeros(self.position_pairs, 2, self.position_pairs, 2, dtype=torch.float64)
        index = torch.arange(self.position_pairs)
        rotation[index, 0, index, 0], rotation[index, 0, index, 1] = cos, -sin
        rotation[index, 1, index, 0], rotation[index, 1, index, 1] = sin, cos
        return rotation.reshape(self.position_dims, self.position_dims)

    def build(self, model: nn.Module, layer: int) -> None:
        device, scale = self.query.weight.device, math.sqrt(self.head_dim)
        if layer == 0:
            codes = token_codes(model.embed.num_embeddings, self.code_dims).to(device)
            model.embed.weight.zero_()
            model.embed.weight[:, self.token_code] = codes
            model.positions.weight.zero_()
            model.positions.weight[:, self.position_code] = self.position_codes(self.max_seq_len).float().to(device)
            model.unembed.weight.zero_()
            model.unembed.weight[:, self.output_code] = codes
            query, key = self.cleared_head_rows(self.query), self.cleared_head_rows(self.key)
            identity_codes = torch.eye(self.code_dims, device=device)
            identity_positions = torch.eye(self.position_dims, device=device)
            query[: self.code_dims, self.token_code] = self.beta_duplicate * scale * identity_codes
            query[self.code_dims :, self.position_code] = -self.self_penalty * scale * identity_positions
            key[: self.code_dims, self.token_code] = identity_codes
            key[self.code_dims :, self.position_code] = identity_positions
            self.read_and_write(self.position_code, self.copied_position, scale=1.0)
        elif layer == 1:
            self.cleared_head_rows(self.query)[: self.position_dims, self.copied_position] = (self.beta_shift * scale * self.shift()).float().to(device)
            self.cleared_head_rows(self.key)[: self.position_dims, self.position_code] = torch.eye(self.position_dims, device=device)
            self.read_and_write(self.token_code, self.output_code, scale=self.gamma)

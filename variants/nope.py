"""NoPE (Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length Generalization in
Transformers"): causal dot-product attention with no positional signal at all.

    q_i = W_q x_i        k_j = W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

Order enters only through the causal mask (a query sees its prefix), from which a model can
still count positions, e.g. by attending uniformly to its prefix.
"""
from __future__ import annotations

from torch import Tensor

from variants import naive
from variants.dot_product import DotProductAttention


class NoPEAttention(DotProductAttention):
    name = "nope"
    # Learned position embeddings would hand it the very signal it is defined without, and the run
    # would be NoPE in name only: the config check refuses model.learned_positions=true for it.
    positional_signal = False

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: no rotation."""
        return naive.dot_product(x, *self.qkv.weight.chunk(3), self.out.weight, self.n_heads, None)

"""Blocks and tiles for the hand-written kernels.

Tiling, for the flash-style kernels (triple's, sigmoid's): the batch*head rows and the queries cut
into tiles, each tile reading only the keys up to its last query, so that the key blocks above the
diagonal are never visited, and sized by measurement (triple's small enough that a tile's
elementwise passes stay in cache; sigmoid's larger, 4 MiB, fastest on its fewer passes). The
kernels recompute a tile's scores in backward instead of keeping them (the flash-attention
recipe), so no T x T tensor is stored.

key_spans, for the windowed ones (sliding_window's band, simplicial's first window): each block of
queries gets its keys and the `reach` keys before them, as one tensor of overlapping spans.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Tiling:
    query_block: int  # queries per tile: long enough for efficient products, short enough to skip most of the future
    tile_elements: int  # scores per tile, so that its elementwise passes stay in cache,
    min_rows: int  # but at least this many batch*head rows, so that long sequences do not split into hundreds of tiles
    min_query_block: int = 16  # no fewer queries per tile than this

    def block(self, seq_len: int) -> int:
        """query_block, or half of a shorter sequence (not below min_query_block), so that even short
        sequences skip the quarter of the scores that lies wholly in the future."""
        return min(self.query_block, max(self.min_query_block, math.ceil(seq_len / 2)))

    def rows(self, batch_heads: int, seq_len: int, block: int) -> int:
        return min(batch_heads, max(self.min_rows, self.tile_elements // (block * seq_len)))

    def tiles(self, batch_heads: int, seq_len: int, block: int) -> Iterator[tuple[slice, int, int]]:
        """(batch*head rows, first query, end query) of every tile; a tile reads the keys before its end."""
        rows = self.rows(batch_heads, seq_len, block)
        for first_row in range(0, batch_heads, rows):
            for start in range(0, seq_len, block):
                yield slice(first_row, first_row + rows), start, min(start + block, seq_len)

    def buffer(self, like: Tensor, batch_heads: int, seq_len: int, block: int, scores_per_query: int = 1) -> Tensor:
        """Room for one tile's scores (times scores_per_query), reused by every tile, so that the loop
        allocates nothing of size T x T: a fresh large allocation costs a page fault per 4 KiB the first
        time it is written."""
        return like.new_empty(scores_per_query * self.rows(batch_heads, seq_len, block) * block * seq_len)


def tile_view(buffer: Tensor, *shape: int) -> Tensor:
    """The first prod(shape) elements of a tile buffer, as shape."""
    return buffer[: math.prod(shape)].view(shape)


def future_mask(block: int, like: Tensor) -> Tensor:
    """The additive causal mask of one diagonal block (block, block): -inf above the diagonal."""
    return torch.full((block, block), -math.inf, dtype=like.dtype, device=like.device).triu(1)


def key_spans(u: Tensor, block: int, reach: int, extra: int) -> Tensor:
    """(rows, T, d) -> (rows, blocks, block + reach, d), blocks = (T + extra) / block: block b's span,
    the `reach` rows before the block and its own, zeros before the first row and after the last."""
    return KeySpans.apply(u, block, reach, extra)


class KeySpans(torch.autograd.Function):
    """key_spans' autograd: forward is a view of overlapping windows on one padded copy; backward adds
    every span's rows back in place, a block's width at a time, which autograd's generic as_strided
    and unfold backwards do many times slower."""

    @staticmethod
    def forward(ctx, u: Tensor, block: int, reach: int, extra: int) -> Tensor:
        rows, seq_len, d = u.shape
        blocks = (seq_len + extra) // block
        padded = F.pad(u, (0, 0, reach, extra))
        ctx.shape = (rows, seq_len, d, block, reach, blocks)
        return padded.as_strided((rows, blocks, block + reach, d), (padded.stride(0), block * d, d, 1))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        rows, seq_len, d, block, reach, blocks = ctx.shape
        # padded row b block + p gets span b's row p: added a block's width of p at a time, all spans at once
        grad_padded = grad.new_zeros(rows, reach + (blocks + 1) * block, d)
        for offset in range(0, block + reach, block):
            piece = grad[:, :, offset : offset + block]
            grad_padded[:, offset : offset + blocks * block].view(rows, blocks, block, d)[:, :, : piece.shape[2]] += piece
        return grad_padded[:, reach : reach + seq_len], None, None, None

"""4-bit weights through torch's own int4 kernel (`aten._weight_int4pack_mm`, "tinygemm") on CUDA.

Measured on an H200 at one row (bench/RESULTS.md), torch's kernel multiplies 4-bit weights about
twice as fast as our Triton kernel, so 4-bit matrices it can take (bf16 activations, K a multiple of
128, N a multiple of 16) are re-packed into its tile layout once, at load. The codes, scales and zeros
stay ours, byte for byte as accounted (`memory.weight_bytes`): torch's kernel wants a bf16 scale and
a bf16 zero per group, w = (q - 8) * scale + zero, which each call derives from ours
(zero = (8 - z) * scale), a small element-wise kernel inside the compiled step. Rounding the fp16
scale to bf16 there is the only difference from `wquant.dequantize` (relative error ~3e-3 at the
output, tested on the CPU variant of the op, measured on the GPU).

Shapes: x [..., K] bf16, weight (N, K) -> [..., N] bf16.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .wquant import GROUP, QuantWeight, unpack4, unpacked

INNER_K_TILES = 8  # measured fastest of 2, 4, 8 on every Qwen3-8B matrix


class Int4Tiles(NamedTuple):
    """A 4-bit weight of `shape` (N, K): codes in torch's int4 tile layout, our scales and zeros."""

    tiles: torch.Tensor  # int32 (CUDA) or uint8 (CPU), N * K / 2 bytes
    scales: torch.Tensor  # fp16 [N, G]
    zeros: torch.Tensor  # uint8 [ceil(N * G / 2)], two 4-bit zeros a byte (as in QuantWeight)
    shape: tuple[int, int]

    @property
    def bits(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.tiles, self.scales, self.zeros))


def eligible(w: QuantWeight, dtype: torch.dtype) -> bool:
    """Whether torch's int4 kernel can multiply w with activations of `dtype`."""
    n, k = w.shape
    return w.bits == 4 and dtype == torch.bfloat16 and k % (INNER_K_TILES * 16) == 0 and n % 16 == 0


def to_tiles(w: QuantWeight) -> Int4Tiles:
    """Re-pack an eligible 4-bit weight (on its device) into torch's tile layout."""
    q, _ = unpacked(w)  # [N, K]
    if w.qweight.is_cuda:  # the CUDA packer takes two codes a byte, the even input in the high nibble
        tiles = torch.ops.aten._convert_weight_to_int4pack(
            (q[:, ::2] << 4 | q[:, 1::2]).contiguous(), INNER_K_TILES
        )
    else:
        tiles = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.int(), INNER_K_TILES)
    return Int4Tiles(tiles, w.scales, w.zeros, w.shape)


def scale_and_zero(w: Int4Tiles) -> torch.Tensor:
    """[G, N, 2] bf16: torch's per-group (scale, zero) for w = (q - 8) * scale + zero."""
    n, k = w.shape
    groups = math.ceil(k / GROUP)
    z = unpack4(w.zeros, n * groups).view(n, groups).float()
    s = w.scales.float()
    return torch.stack([s, (8 - z) * s], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)


@torch.library.custom_op("membudget::int4_mm", mutates_args=(), tags=(torch.Tag.needs_fixed_stride_order,))
def int4_mm(x: torch.Tensor, tiles: torch.Tensor, scale_zero: torch.Tensor) -> torch.Tensor:
    """x [M, K] bf16, torch's tiles and [G, N, 2] scale and zero -> [M, N] bf16.

    Opaque to torch.compile on purpose: its kernel reads raw row-major buffers, and measured on the GPU,
    Inductor handed it a scale-and-zero buffer in another memory order (garbage out). The tag asks
    Inductor for the traced (contiguous) strides, and every input is made contiguous before the call
    anyway (a no-op when Inductor complies)."""
    op = torch.ops.aten._weight_int4pack_mm if x.is_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
    return op(x.contiguous(), tiles.contiguous(), GROUP, scale_zero.contiguous())


@int4_mm.register_fake
def _(x: torch.Tensor, tiles: torch.Tensor, scale_zero: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], scale_zero.shape[1])


def linear(x: torch.Tensor, w: Int4Tiles) -> torch.Tensor:
    """x [..., K] bf16 @ w.T -> [..., N] bf16."""
    n, k = w.shape
    return int4_mm(x.reshape(-1, k), w.tiles, scale_and_zero(w)).view(*x.shape[:-1], n)

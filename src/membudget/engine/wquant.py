"""Weight-only int8 / int4 linears: group-128 asymmetric integers with a 16-bit scale and a b-bit zero.

The layout is the study's memory convention, byte for byte (`memory.weight_bytes`):
  qweight  8-bit: uint8 [N, K];  4-bit: uint8 [ceil(N * K / 2)], two values a byte (low nibble first)
  scales   fp16 [N, G] (as GPTQ and AWQ store them: 11 mantissa bits against bf16's 8)
  zeros    8-bit: uint8 [N, G];  4-bit: uint8 [ceil(N * G / 2)], packed like qweight
with G = ceil(K / 128) groups per output row along the input dimension, and
  w[n, k] = (q[n, k] - zero[n, k // 128]) * scale[n, k // 128].

`quantize` is round-to-nearest (RTN) with the range widened to include 0 (as GPTQ's quantizer does).
The products with these weights are `engine/linear.py`'s (`linear`); `dequantize` is their reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

GROUP = 128


class QuantWeight(NamedTuple):
    """A linear weight of `shape` (N, K) stored as packed `bits`-bit integers (see the module docstring)."""

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    bits: int
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, self.zeros))


def pack4(values: torch.Tensor) -> torch.Tensor:
    """uint8 values < 16, any shape -> [ceil(n / 2)] uint8, element 2i in the low nibble of byte i."""
    flat = values.reshape(-1).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack4(packed: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of pack4: the first `count` values, uint8."""
    out = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(-1)
    return out[:count]


def quantize(w: torch.Tensor, bits: int, scale_dtype: torch.dtype = torch.float16) -> QuantWeight:
    """Round-to-nearest group-128 asymmetric quantization of w [N, K]."""
    if bits not in (8, 4):
        raise ValueError(f"weight bits must be 8 or 4, not {bits}")
    n, k = w.shape
    groups = math.ceil(k / GROUP)
    pad = groups * GROUP - k
    wf = w.float()
    lo = F.pad(wf, (0, pad), value=float("inf")).view(n, groups, GROUP).amin(-1).clamp(max=0)  # [N, G]
    hi = F.pad(wf, (0, pad), value=float("-inf")).view(n, groups, GROUP).amax(-1).clamp(min=0)
    top = 2**bits - 1
    # round the stored scale up (one ulp of margin), so top * scale still spans [lo, hi] after the
    # cast and no value is clamped by more than half a step
    scale = ((hi - lo) / top * (1 + torch.finfo(scale_dtype).eps)).clamp(min=1e-8).to(scale_dtype)
    s = scale.float()
    zero = torch.round(-lo / s).clamp(0, top)  # [N, G]
    wg = F.pad(wf, (0, pad)).view(n, groups, GROUP)
    q = (torch.round(wg / s[..., None]) + zero[..., None]).clamp(0, top).to(torch.uint8).view(n, -1)[:, :k]
    zero = zero.to(torch.uint8)
    if bits == 4:
        return QuantWeight(pack4(q), scale, pack4(zero), 4, (n, k))
    return QuantWeight(q.contiguous(), scale, zero, 8, (n, k))


def unpacked(weight: QuantWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """(q [N, K], zeros [N, G]) as uint8."""
    n, k = weight.shape
    groups = math.ceil(k / GROUP)
    if weight.bits == 4:
        return unpack4(weight.qweight, n * k).view(n, k), unpack4(weight.zeros, n * groups).view(n, groups)
    return weight.qweight, weight.zeros


def dequantize(weight: QuantWeight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight [N, K] in `dtype` (computed in fp32, in place on one fresh buffer)."""
    n, k = weight.shape
    groups = math.ceil(k / GROUP)
    pad = groups * GROUP - k
    if weight.bits == 4:
        q = torch.empty(weight.qweight.numel(), 2, dtype=torch.float32, device=weight.qweight.device)
        q[:, 0] = weight.qweight & 0xF
        q[:, 1] = weight.qweight >> 4
        q = q.view(-1)[: n * k].view(n, k)
        zeros = unpack4(weight.zeros, n * groups).view(n, groups)
    else:
        q, zeros = weight.qweight.float(), weight.zeros
    if pad:
        q = F.pad(q, (0, pad))
    grouped = q.view(n, groups, GROUP)
    grouped.sub_(zeros.float()[..., None]).mul_(weight.scales.float()[..., None])
    w = grouped.view(n, -1)
    return (w[:, :k] if pad else w).to(dtype)

"""A layer's attention inputs for one row, in one kernel: the split-K sums of the q/k/v product, the
bias (Qwen2), per-head RMSNorm of q and k (Qwen3) and RoPE (engine/model.py `attention_inputs`).

Compiled by Inductor, that work took four or five kernels per layer at batch 1 (the sum consumed by
three others, q and k each normed and rotated, v split off), 1-2 us each on an H200
(bench/RESULTS.md). Here one program per head reads the head's partial sums [S, D] as two halves,
adds them, rounds to the activations' dtype where the eager forward rounds (the product, the bias,
the normalized value, the norm's weight, the rotation), and writes q, k or v.

Shapes: partial [S, (H + 2 H_kv) * D] (fp32 partial sums, or the 16-bit product itself with S = 1),
bias [(H + 2 H_kv) * D] or None, q_norm, k_norm [D] or None, cos, sin [D] (the row's position) ->
q [1, H, 1, D], k, v [1, H_kv, 1, D] in cos's dtype. D even. Tested on the CPU with
TRITON_INTERPRET=1 against the forward's own torch code (tests/kernels/check_qkv.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import await_inputs, use_pdl


@triton.jit
def _round(x, DTYPE: tl.constexpr):
    """fp32 -> the activations' dtype -> fp32 (where the eager forward holds a 16-bit tensor), rounded to
    nearest even. bf16 by integer arithmetic on the bits: Triton's interpreter truncates a bf16
    conversion (finite values only)."""
    if DTYPE == tl.bfloat16:
        u = x.to(tl.uint32, bitcast=True)
        return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).to(tl.float32, bitcast=True)
    else:
        return x.to(DTYPE).to(tl.float32)


@triton.jit
def _attention_inputs_kernel(
    partial,
    s_ps,
    bias,
    q_norm,
    k_norm,
    cos,
    sin,
    q_out,
    k_out,
    v_out,
    eps,
    SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    HEADS: tl.constexpr,
    KV_HEADS: tl.constexpr,
    HALF: tl.constexpr,  # D / 2
    BLOCK_HALF: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    QK_NORM: tl.constexpr,
    PDL: tl.constexpr,
):
    h = tl.program_id(0)  # q heads, then k heads, then v heads
    lo = tl.arange(0, BLOCK_HALF)
    d_mask = lo < HALF
    # the norm and rotation tables do not depend on any earlier kernel of the layer
    c_lo = tl.load(cos + lo, mask=d_mask, other=0.0).to(tl.float32)
    c_hi = tl.load(cos + HALF + lo, mask=d_mask, other=0.0).to(tl.float32)
    s_lo = tl.load(sin + lo, mask=d_mask, other=0.0).to(tl.float32)
    s_hi = tl.load(sin + HALF + lo, mask=d_mask, other=0.0).to(tl.float32)
    await_inputs(PDL)
    dtype = cos.dtype.element_ty
    offs_s = tl.arange(0, BLOCK_S)
    s_mask = (offs_s < SPLITS)[:, None] & d_mask[None, :]
    first = partial + offs_s[:, None] * s_ps + h * 2 * HALF + lo[None, :]
    x_lo = _round(tl.sum(tl.load(first, mask=s_mask, other=0.0).to(tl.float32), axis=0), dtype)
    x_hi = _round(tl.sum(tl.load(first + HALF, mask=s_mask, other=0.0).to(tl.float32), axis=0), dtype)
    if HAS_BIAS:
        x_lo = _round(x_lo + tl.load(bias + h * 2 * HALF + lo, mask=d_mask, other=0.0).to(tl.float32), dtype)
        x_hi = _round(
            x_hi + tl.load(bias + h * 2 * HALF + HALF + lo, mask=d_mask, other=0.0).to(tl.float32), dtype
        )
    if h < HEADS + KV_HEADS:
        if QK_NORM:
            weights = q_norm if h < HEADS else k_norm
            r = tl.rsqrt((tl.sum(x_lo * x_lo, axis=0) + tl.sum(x_hi * x_hi, axis=0)) / (2 * HALF) + eps)
            w_lo = tl.load(weights + lo, mask=d_mask, other=0.0).to(tl.float32)
            w_hi = tl.load(weights + HALF + lo, mask=d_mask, other=0.0).to(tl.float32)
            x_lo = _round(w_lo * _round(x_lo * r, dtype), dtype)
            x_hi = _round(w_hi * _round(x_hi * r, dtype), dtype)
        # rotate-half RoPE: (x_lo, x_hi) -> (x_lo cos - x_hi sin, x_hi cos + x_lo sin), each product rounded
        y_lo = _round(x_lo * c_lo, dtype) + _round(-x_hi * s_lo, dtype)
        y_hi = _round(x_hi * c_hi, dtype) + _round(x_lo * s_hi, dtype)
        if h < HEADS:
            out = q_out + h * 2 * HALF
        else:
            out = k_out + (h - HEADS) * 2 * HALF
    else:
        y_lo, y_hi = x_lo, x_hi
        out = v_out + (h - HEADS - KV_HEADS) * 2 * HALF
    tl.store(out + lo, _round(y_lo, dtype), mask=d_mask)
    tl.store(out + HALF + lo, _round(y_hi, dtype), mask=d_mask)


@torch.library.custom_op("membudget::attention_inputs", mutates_args=())
def attention_inputs_op(
    partial: torch.Tensor,
    bias: torch.Tensor | None,
    q_norm: torch.Tensor | None,
    k_norm: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
    heads: int,
    kv_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See the module docstring (an opaque op under torch.compile: engine/launch.py)."""
    d = cos.shape[-1]
    partial = partial.reshape(-1, (heads + 2 * kv_heads) * d)
    if partial.stride(-1) != 1:
        partial = partial.contiguous()
    cos, sin = cos.reshape(d).contiguous(), sin.reshape(d).contiguous()
    q = torch.empty(1, heads, 1, d, dtype=cos.dtype, device=cos.device)
    k = torch.empty(1, kv_heads, 1, d, dtype=cos.dtype, device=cos.device)
    v = torch.empty(1, kv_heads, 1, d, dtype=cos.dtype, device=cos.device)
    splits = partial.shape[0]
    pdl = use_pdl(cos.device)
    _attention_inputs_kernel[(heads + 2 * kv_heads,)](
        partial, partial.stride(0), cos if bias is None else bias, cos if q_norm is None else q_norm,
        cos if k_norm is None else k_norm, cos, sin, q, k, v, eps,
        SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits), HEADS=heads, KV_HEADS=kv_heads, HALF=d // 2,
        BLOCK_HALF=triton.next_power_of_2(d // 2), HAS_BIAS=bias is not None, QK_NORM=q_norm is not None,
        PDL=pdl, num_warps=1, launch_pdl=pdl,
    )  # fmt: skip
    return q, k, v


@attention_inputs_op.register_fake
def _(partial, bias, q_norm, k_norm, cos, sin, eps, heads, kv_heads):
    d = cos.shape[-1]
    q = cos.new_empty(1, heads, 1, d)
    return q, cos.new_empty(1, kv_heads, 1, d), cos.new_empty(1, kv_heads, 1, d)


def split_heads(
    partial: torch.Tensor,
    bias: torch.Tensor | None,
    q_norm: torch.Tensor | None,
    k_norm: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
    heads: int,
    kv_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of one row from the q/k/v product's partial sums (see the module docstring)."""
    d = cos.shape[-1]
    if d % 2 or partial.shape[-1] != (heads + 2 * kv_heads) * d:
        raise ValueError(
            f"partial sums of {partial.shape[-1]} outputs do not hold {heads}+2*{kv_heads} heads of {d}"
        )
    if (q_norm is None) != (k_norm is None):
        raise ValueError("q and k are normed together or not at all")
    return attention_inputs_op(partial, bias, q_norm, k_norm, cos, sin, eps, heads, kv_heads)

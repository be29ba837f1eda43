"""Weight-only int8 / int4 matrix products in Triton: y = x @ dequantize(w).T without a 16-bit copy of w.

Layout as in engine/wquant.py: codes [N, K] (8-bit: one per byte; 4-bit: two per byte, low nibble
first, so row n starts at byte n * K / 2), fp16 scales [N, G] and b-bit zeros (G = ceil(K / 128)).
Each program owns BLOCK_N outputs and a range of groups (split-K when N alone would under-fill the
GPU; the partial sums are added by torch in a fixed order, so results are deterministic). Per group
of 128 inputs it computes the integer dot product d = sum_k x_k q_k and adds (d - z * sum_k x_k) * s.

Codes become floats without integer-to-float conversions (a slow instruction on NVIDIA GPUs): the bits
of a code or'ed into the mantissa of 2**23 give the float 2**23 + code, exact, and one subtraction
leaves the code. A high nibble is masked in place (16 * code) and its x is scaled by 1 / 16 instead.

One row (batch-1 decode): broadcast multiply and sum on the CUDA cores. Two or more rows: the
dequantized tile goes to tensor cores (`tl.dot`; codes and their differences are exact in bf16).

Shapes: x [M, K] (last dim contiguous), w of shape (N, K) -> out [M, N] in x's dtype.
Tested on the CPU with TRITON_INTERPRET=1 against `wquant.dequantize` + matmul (tests/kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .wquant import GROUP, QuantWeight

MAGIC = tl.constexpr(0x4B000000)  # the float 2**23: its low 23 bits are mantissa, one unit each


@triton.jit
def _as_float(bits):
    """int32 values < 2**23 -> the same values as fp32 (bit trick, no conversion instruction)."""
    return (bits | MAGIC).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _codes(codes, offs_n, n_mask, g, K, BITS: tl.constexpr, HALF: tl.constexpr):
    """Group g's codes of rows offs_n as two fp32 halves [BLOCK_N, HALF] and the input offsets of each
    half [HALF]. 8-bit (HALF = 64): inputs 0..63 and 64..127 of the group; 4-bit (HALF = 64): the low
    nibbles (even inputs) and the high nibbles kept in place (odd inputs, 16 * code) of its 64 bytes.
    8-bit with HALF = 128: the whole group in the first half (the second is empty)."""
    half = tl.arange(0, HALF)
    if BITS == 8:
        k_lo = g * 128 + half
        k_hi = k_lo + HALF
        rows = codes + offs_n[:, None].to(tl.int64) * K
        b_lo = tl.load(rows + k_lo[None, :], mask=n_mask[:, None] & (k_lo < K)[None, :], other=0)
        w_lo = _as_float(b_lo.to(tl.int32))
        if HALF == 64:
            b_hi = tl.load(rows + k_hi[None, :], mask=n_mask[:, None] & (k_hi < K)[None, :], other=0)
            w_hi = _as_float(b_hi.to(tl.int32))
        else:
            w_hi = w_lo
    else:
        byte = g * 64 + half
        k_lo = 2 * byte
        k_hi = k_lo + 1
        rows = codes + offs_n[:, None].to(tl.int64) * (K // 2)
        b = tl.load(rows + byte[None, :], mask=n_mask[:, None] & (k_lo < K)[None, :], other=0).to(tl.int32)
        w_lo = _as_float(b & 15)
        w_hi = _as_float(b & 240)  # 16 * the high code
    return w_lo, w_hi, k_lo, k_hi


@triton.jit
def _scale_zero(scales, zeros, offs_n, n_mask, g, GROUPS, BITS: tl.constexpr):
    """fp32 scale and zero [BLOCK_N] of group g of rows offs_n."""
    meta = offs_n * GROUPS + g
    scale = tl.load(scales + meta, mask=n_mask, other=0.0).to(tl.float32)
    if BITS == 8:
        zero = tl.load(zeros + meta, mask=n_mask, other=0).to(tl.int32)
    else:
        zero = (tl.load(zeros + meta // 2, mask=n_mask, other=0).to(tl.int32) >> ((meta % 2) * 4)) & 15
    return scale, _as_float(zero)


@triton.jit
def _qlinear_kernel(
    x,
    codes,
    scales,
    zeros,
    out,
    M,
    N,
    K,
    GROUPS,
    GROUPS_PER_SPLIT,
    s_xm,
    s_os,
    s_om,
    BITS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    USE_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    g_end = tl.minimum(GROUPS, (pid_s + 1) * GROUPS_PER_SPLIT)
    step_hi = 0.0625 if BITS == 4 else 1.0  # the high nibble holds 16 * code
    if USE_DOT:  # rows on tensor cores: [BLOCK_M, 64] x [64, BLOCK_N] per half group
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_mask = offs_m < M
        x_rows = x + offs_m[:, None] * s_xm
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for g in range(pid_s * GROUPS_PER_SPLIT, g_end):
            w_lo, w_hi, k_lo, k_hi = _codes(codes, offs_n, n_mask, g, K, BITS, 64)
            x_lo = tl.load(x_rows + k_lo[None, :], mask=m_mask[:, None] & (k_lo < K)[None, :], other=0.0)
            x_hi = tl.load(x_rows + k_hi[None, :], mask=m_mask[:, None] & (k_hi < K)[None, :], other=0.0)
            x_sum = tl.sum(x_lo.to(tl.float32), axis=1) + tl.sum(x_hi.to(tl.float32), axis=1)
            x_hi = (x_hi.to(tl.float32) * step_hi).to(x_hi.dtype)  # exact: a power of two
            d = tl.dot(x_lo, tl.trans(w_lo.to(x_lo.dtype)), input_precision=PRECISION)
            d = tl.dot(x_hi, tl.trans(w_hi.to(x_lo.dtype)), d, input_precision=PRECISION)
            scale, zero = _scale_zero(scales, zeros, offs_n, n_mask, g, GROUPS, BITS)
            acc += (d - x_sum[:, None] * zero[None, :]) * scale[None, :]
        ptr = out + pid_s * s_os + offs_m[:, None] * s_om + offs_n[None, :]
        tl.store(ptr, acc.to(out.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])
    else:  # one row on the CUDA cores: multiply and sum along the group, all in 2-D tiles
        HALF: tl.constexpr = 128 if BITS == 8 else 64
        x_row = x + pid_m * s_xm
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for g in range(pid_s * GROUPS_PER_SPLIT, g_end):
            w_lo, w_hi, k_lo, k_hi = _codes(codes, offs_n, n_mask, g, K, BITS, HALF)
            x_lo = tl.load(x_row + k_lo, mask=k_lo < K, other=0.0).to(tl.float32)
            if BITS == 8:
                x_sum = tl.sum(x_lo, axis=0)
                d = tl.sum(w_lo * x_lo[None, :], axis=1)
            else:
                x_hi = tl.load(x_row + k_hi, mask=k_hi < K, other=0.0).to(tl.float32)
                x_sum = tl.sum(x_lo, axis=0) + tl.sum(x_hi, axis=0)
                d = tl.sum(w_lo * x_lo[None, :] + w_hi * (x_hi * step_hi)[None, :], axis=1)
            scale, zero = _scale_zero(scales, zeros, offs_n, n_mask, g, GROUPS, BITS)
            acc += (d - x_sum * zero) * scale
        tl.store(out + pid_s * s_os + pid_m * s_om + offs_n, acc.to(out.dtype.element_ty), mask=n_mask)


def splits_for(n: int, groups: int, block_n: int, target_programs: int) -> int:
    """Split-K factor: enough programs to fill the GPU, each with at least 4 groups."""
    programs = triton.cdiv(n, block_n)
    return max(1, min(groups // 4, target_programs // programs))


def qlinear(
    x: torch.Tensor,
    w: QuantWeight,
    block_n: int | None = None,
    splits: int | None = None,
    num_warps: int = 4,
    num_stages: int = 3,
    target_programs: int = 264,
    use_dot: bool | None = None,
) -> torch.Tensor:
    """x [..., K] @ dequantize(w).T -> [..., N] in x's dtype (fp32, bf16 or fp16), one fused kernel."""
    n, k = w.shape
    if x.shape[-1] != k:
        raise ValueError(f"x has {x.shape[-1]} inputs, the weight {k}")
    if w.bits == 4 and k % 2:
        raise ValueError(f"the 4-bit kernel needs an even input size, not {k}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    groups = triton.cdiv(k, GROUP)
    use_dot = m > 1 if use_dot is None else use_dot
    block_m = 1 if not use_dot else (16 if m <= 16 else 64)
    block_n = block_n or 64
    splits = splits or splits_for(n, groups, block_n, target_programs // triton.cdiv(m, block_m))
    per_split = triton.cdiv(groups, splits)
    splits = triton.cdiv(groups, per_split)
    if splits == 1:
        out = torch.empty(1, m, n, dtype=x.dtype, device=x.device)
    else:
        out = torch.empty(splits, m, n, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(n, block_n), splits, triton.cdiv(m, block_m))
    _qlinear_kernel[grid](
        x2,
        w.qweight,
        w.scales,
        w.zeros,
        out,
        m,
        n,
        k,
        groups,
        per_split,
        x2.stride(0),
        out.stride(0),
        out.stride(1),
        BITS=w.bits,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        USE_DOT=use_dot,
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        num_warps=num_warps,
        num_stages=num_stages,
    )
    y = out[0] if splits == 1 else out.sum(0).to(x.dtype)
    return y.view(*lead, n)

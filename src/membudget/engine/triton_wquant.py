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
def _group_dot(x_lo, x_hi, w_lo, w_hi, USE_DOT: tl.constexpr, PRECISION: tl.constexpr):
    """[BLOCK_M, BLOCK_N] sum over the group's inputs of x * w (x halves [BLOCK_M, L], w [BLOCK_N, L])."""
    if USE_DOT:
        dtype = x_lo.dtype
        d = tl.dot(x_lo, tl.trans(w_lo.to(dtype)), input_precision=PRECISION)
        d = tl.dot(x_hi, tl.trans(w_hi.to(dtype)), d, input_precision=PRECISION)
    else:
        xl = x_lo.to(tl.float32)
        xh = x_hi.to(tl.float32)
        d = tl.sum(xl[:, None, :] * w_lo[None, :, :] + xh[:, None, :] * w_hi[None, :, :], axis=2)
    return d


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
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n_mask = offs_n < N
    m_mask = offs_m < M
    # a group is split into two halves of 64 inputs: 8-bit, inputs 0..63 and 64..127; 4-bit, the low
    # and the high nibbles of its 64 bytes (the even and the odd inputs)
    half = tl.arange(0, 64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    g_end = tl.minimum(GROUPS, (pid_s + 1) * GROUPS_PER_SPLIT)
    for g in range(pid_s * GROUPS_PER_SPLIT, g_end):
        if BITS == 8:
            k_lo = g * 128 + half
            k_hi = k_lo + 64
            w_ptr = codes + offs_n[:, None].to(tl.int64) * K
            b_lo = tl.load(w_ptr + k_lo[None, :], mask=n_mask[:, None] & (k_lo < K)[None, :], other=0)
            b_hi = tl.load(w_ptr + k_hi[None, :], mask=n_mask[:, None] & (k_hi < K)[None, :], other=0)
            w_lo = _as_float(b_lo.to(tl.int32))
            w_hi = _as_float(b_hi.to(tl.int32))
            step_hi = 1.0
        else:
            byte = g * 64 + half
            k_lo = 2 * byte
            k_hi = k_lo + 1
            w_ptr = codes + offs_n[:, None].to(tl.int64) * (K // 2)
            b = tl.load(w_ptr + byte[None, :], mask=n_mask[:, None] & (k_lo < K)[None, :], other=0)
            b = b.to(tl.int32)
            w_lo = _as_float(b & 15)
            w_hi = _as_float(b & 240)  # 16 * the high code
            step_hi = 0.0625
        x_ptr = x + offs_m[:, None] * s_xm
        x_lo = tl.load(x_ptr + k_lo[None, :], mask=m_mask[:, None] & (k_lo < K)[None, :], other=0.0)
        x_hi = tl.load(x_ptr + k_hi[None, :], mask=m_mask[:, None] & (k_hi < K)[None, :], other=0.0)
        x_hi = (x_hi.to(tl.float32) * step_hi).to(x_hi.dtype)  # exact: a power of two
        x_sum = tl.sum(x_lo.to(tl.float32), axis=1) + tl.sum(x_hi.to(tl.float32), axis=1) / step_hi
        d = _group_dot(x_lo, x_hi, w_lo, w_hi, USE_DOT, PRECISION)
        meta = offs_n * GROUPS + g
        scale = tl.load(scales + meta, mask=n_mask, other=0.0).to(tl.float32)
        if BITS == 8:
            zero = tl.load(zeros + meta, mask=n_mask, other=0).to(tl.int32)
        else:
            zero = (tl.load(zeros + meta // 2, mask=n_mask, other=0).to(tl.int32) >> ((meta % 2) * 4)) & 15
        acc += (d - x_sum[:, None] * _as_float(zero)[None, :]) * scale[None, :]
    ptr = out + pid_s * s_os + offs_m[:, None] * s_om + offs_n[None, :]
    tl.store(ptr, acc.to(out.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


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
    use_dot = m > 1
    block_m = 1 if not use_dot else (16 if m <= 16 else 64)
    block_n = block_n or (64 if use_dot else 32)
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

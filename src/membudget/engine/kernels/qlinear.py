"""Weight-only int8 / int4 matrix products in Triton: y = x @ dequantize(w).T without a 16-bit copy of w.

Layout as in engine/wquant.py: codes [N, K] (8-bit: one per byte; 4-bit: two per byte, low nibble
first, so row n starts at byte n * K / 2), fp16 scales [N, G] and b-bit zeros (G = ceil(K / 128)).
Each program owns BLOCK_N outputs and a range of groups (split-K when N alone would under-fill the
GPU; the partial sums are added by gemv.add_splits in a fixed order, so results are
deterministic). Per group of 128 inputs it computes the integer dot product d = sum_k x_k q_k and
adds (d - z * sum_k x_k) * s.

Codes become floats without integer-to-float conversions (a slow instruction on NVIDIA GPUs): the bits
of a code or'ed into the mantissa of 2**23 give the float 2**23 + code, exact, and one subtraction
leaves the code. A high nibble is masked in place (16 * code) and its x is scaled by 1 / 16 instead.

One row (batch-1 decode) of bf16/fp16 goes to engine/kernels/gemv_tc.py at 4 bits (tensor cores;
N % 16 == 0, K % 128 == 0), else to engine/kernels/gemv.py (packed 16-bit arithmetic); other single
rows (fp32, K % 8 != 0): broadcast multiply and sum on the CUDA cores here. Two or more rows: the
dequantized tile goes to tensor cores (`tl.dot`; codes and their differences are exact in bf16).

Shapes: x [..., K], w of shape (N, K) -> [..., N] in x's dtype (the kernel sees x as [M, K]).
Speed on an H200: a Qwen3-8B batch-1 step at 8 bits takes 0.77-0.88x the bf16
step, at 4 bits 0.62x (with gemv_tc; 0.67-0.78x with gemv over machines and runs);
16 rows 1.10-1.14x.
Tested on the CPU with TRITON_INTERPRET=1 against `wquant.dequantize` + matmul (tests/kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..wquant import GROUP, QuantWeight
from . import gemv, gemv_tc
from .gemv import add_splits, splits_for
from .ptx_codes import codes_to

MAGIC = tl.constexpr(0x4B000000)  # the float 2**23: its low 23 bits are mantissa, one unit each


@triton.jit
def _as_float(bits):
    """int32 values < 2**23 -> the same values as fp32 (bit trick, no conversion instruction)."""
    return (bits | MAGIC).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _load_codes(codes, offs_n, n_mask, g, K, BITS: tl.constexpr):
    """The bytes of group g of rows offs_n: [BLOCK_N, 128] (8-bit) or
    [BLOCK_N, 64] (4-bit, input 2i in the low nibble of byte i, 2i + 1 in the high one), uint8."""
    if BITS == 8:
        k = g * 128 + tl.arange(0, 128)
        row_bytes = K
    else:
        k = g * 64 + tl.arange(0, 64)
        row_bytes = K // 2
    mask = n_mask[:, None] & (k < row_bytes)[None, :]
    return tl.load(codes + offs_n[:, None].to(tl.int64) * row_bytes + k[None, :], mask=mask, other=0)


@triton.jit
def _unpack(b, BITS: tl.constexpr):
    """Bytes from _load_codes -> fp32 codes (w_lo, w_hi): 8-bit, all 128 in w_lo (w_hi unused); 4-bit,
    the low nibbles (even inputs) and the high nibbles left in place (odd inputs, 16 * code)."""
    b = b.to(tl.int32)
    if BITS == 8:
        w = _as_float(b)
        return w, w
    return _as_float(b & 15), _as_float(b & 240)


@triton.jit
def _load_inputs(x_rows, g, K, row_mask):
    """Group g's inputs of the rows at x_rows [R] (pointers), as [R, 128] and as its even and odd
    inputs [R, 64] each (one contiguous load, split in registers)."""
    k = g * 128 + tl.arange(0, 128)
    x = tl.load(x_rows[:, None] + k[None, :], mask=row_mask[:, None] & (k < K)[None, :], other=0.0)
    even, odd = tl.split(tl.reshape(x, (x.shape[0], 64, 2)))
    return x, even, odd


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
    CODES16: tl.constexpr,  # 4-bit codes straight to x's 16-bit type (engine/kernels/ptx_codes.py), for tl.dot
    BF16: tl.constexpr,
    ASM: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    x_rows = x + offs_m * s_xm
    g_start = pid_s * GROUPS_PER_SPLIT
    g_end = tl.minimum(GROUPS, g_start + GROUPS_PER_SPLIT)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    # (loading the next group's codes ahead, a register double buffer, measured slower)
    for g in range(g_start, g_end):
        b = _load_codes(codes, offs_n, n_mask, g, K, BITS)
        w_lo, w_hi = _unpack(b, BITS)
        xg, x_even, x_odd = _load_inputs(x_rows, g, K, m_mask)
        x_sum = tl.sum(xg.to(tl.float32), axis=1)  # [BLOCK_M]
        if CODES16:  # low nibbles (even inputs) and high nibbles (odd inputs), each exact
            d = tl.dot(x_even, tl.trans(codes_to(b, 15, 0, BF16, ASM)))
            d = tl.dot(x_odd, tl.trans(codes_to(b, 15, 4, BF16, ASM)), d)
        elif USE_DOT:  # rows on tensor cores (codes are exact in 16-bit floats)
            if BITS == 8:
                d = tl.dot(xg, tl.trans(w_lo.to(xg.dtype)), input_precision=PRECISION)
            else:
                x_odd = (x_odd.to(tl.float32) * 0.0625).to(xg.dtype)  # exact: a power of two
                d = tl.dot(x_even, tl.trans(w_lo.to(xg.dtype)), input_precision=PRECISION)
                d = tl.dot(x_odd, tl.trans(w_hi.to(xg.dtype)), d, input_precision=PRECISION)
        else:  # one row on the CUDA cores, in 2-D tiles
            if BITS == 8:
                d = tl.sum(w_lo * tl.reshape(xg.to(tl.float32), (128,))[None, :], axis=1)
            else:
                x_even = tl.reshape(x_even.to(tl.float32), (64,))
                x_odd = tl.reshape(x_odd.to(tl.float32), (64,)) * 0.0625
                d = tl.sum(w_lo * x_even[None, :] + w_hi * x_odd[None, :], axis=1)
            d = d[None, :]
        scale, zero = _scale_zero(scales, zeros, offs_n, n_mask, g, GROUPS, BITS)
        acc += (d - x_sum[:, None] * zero[None, :]) * scale[None, :]
    ptr = out + pid_s * s_os + offs_m[:, None] * s_om + offs_n[None, :]
    tl.store(ptr, acc.to(out.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


def qlinear(
    x: torch.Tensor,
    w: QuantWeight,
    block_n: int | None = None,
    splits: int | None = None,
    num_warps: int = 4,
    num_stages: int = 3,
    target_programs: int = 2048,
    packed: bool | None = None,
) -> torch.Tensor:
    """x [..., K] @ dequantize(w).T -> [..., N] in x's dtype (fp32, bf16 or fp16), one fused kernel.
    Two or more rows use the tensor cores (at one row they measured slower, 56.8 vs 36.6 us for
        Qwen3-8B's gate_up at 4 bits); there 4-bit codes go straight to x's 16-bit type by
        engine/kernels/ptx_codes.py where x is bf16/fp16, else through fp32.
        packed: one row in packed fp16 arithmetic (engine/kernels/gemv.py; default where it applies and
        the tensor-core one-row kernel does not: engine/kernels/gemv_tc.py takes one row of 4-bit weights)."""
    n, k = w.shape
    if x.shape[-1] != k:
        raise ValueError(f"x has {x.shape[-1]} inputs, the weight {k}")
    if w.bits == 4 and k % 2:
        raise ValueError(f"the 4-bit kernel needs an even input size, not {k}")
    if packed is None and gemv_tc.supports(x, w):
        return gemv_tc.gemv_tc(x, w, splits=splits)
    if packed or (packed is None and gemv.supports(x, w)):
        return gemv.gemv(x, w, block_n=block_n, splits=splits)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    groups = triton.cdiv(k, GROUP)
    use_dot = m > 1
    codes16 = w.bits == 4 and x.dtype in (torch.bfloat16, torch.float16)
    block_m = 1 if not use_dot else (16 if m <= 16 else 64)
    block_n = block_n or 128
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
        CODES16=codes16 and use_dot,
        BF16=x.dtype == torch.bfloat16,
        ASM=x.is_cuda,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    y = out[0] if splits == 1 else add_splits(out).to(x.dtype)
    return y.view(*lead, n)

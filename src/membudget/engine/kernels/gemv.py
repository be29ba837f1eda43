"""One-row weight-only int8 / int4 matrix product (batch-1 decode): y = x @ dequantize(w).T in packed
16-bit arithmetic on the CUDA cores.

Layout as in engine/wquant.py, read as 32-bit words: a chunk of 8 inputs is one word of 4-bit codes or
two of 8-bit codes; a group of 128 inputs is 16 chunks. Each program owns BLOCK_N output rows and a
range of groups (split-K; partial sums are added by `add_splits`, in a fixed order). Per group it
prepares the 16 chunks of x once (scaled by a power of two per chunk, fp16, packed as the codes side
pairs them: engine/kernels/ptx_gemv.py), then for every row and chunk one inline-PTX instance turns the
codes into code - zero in fp16 and multiply-adds them with the inputs, two per instruction; the fp32
partials are scaled by the group's scale and summed. About 3.5 instructions per weight and lane
where the fp32 kernel (engine/kernels/qlinear.py) takes ~6.6 (sm_90 loops, bench/inspect_kernel.py).
A program fetches its first group's codes, scales and zeros before it waits for its input
(engine/kernels/launch.py): Qwen3-8B int8 step 8 % faster, int4 within its noise.

Precision: code - zero is exact in fp16 and so is a scaled bf16 input, except inputs below 2**-14 of
their chunk's largest (fp16 subnormals: absolute error <= 2**-25 of that largest); each product is
rounded to fp16 (11 bits) and four are summed per half before fp32 takes over: below the 16-bit
rounding of the output (tests/test_gemv_ptx.py bounds it per chunk).

Speed on an H200 (Qwen3-8B matrices, one row): 4-bit 15-27 % faster per matrix than
the fp32 kernel (gate_up 29.1 vs 36.6 us), 8-bit about the same (loads, not instructions, bound it).

One row of 4-bit weights goes to engine/kernels/gemv_tc.py where it applies (tensor cores, 20-27 %
faster per matrix); this kernel takes 8-bit rows and the 4-bit shapes that one does not.

Shapes: x [..., K] holding one row (bf16 or fp16, K % 8 == 0), w (N, K) -> [..., N] in x's dtype.
Not for fp32 inputs or several rows (qlinear.qlinear handles those). In the interpreter (ASM off) the same pairing runs
per element in fp32 (tests/kernels/check_gemv.py).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..wquant import GROUP, QuantWeight
from .launch import await_inputs, use_pdl
from .ptx_gemv import DOT4, DOT8, PREP4_BF16, PREP4_F16, PREP8_BF16, PREP8_F16


@triton.jit
def _half(word, HI: tl.constexpr):
    """fp32 value of the low (HI false) or high fp16 half of int32 words."""
    if HI:
        h = (word >> 16) & 0xFFFF
    else:
        h = word & 0xFFFF
    return h.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _pack(hi, lo):
    """Two fp32 tensors -> int32 words of fp16 pairs (lo in the low half), rounded to nearest."""
    lo16 = lo.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    hi16 = hi.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return (hi16 << 16) | lo16


@triton.jit
def _inputs(p, BF16: tl.constexpr):
    """int32 words of two 16-bit inputs -> (first, second) as fp32."""
    if BF16:
        lo = (p << 16).to(tl.float32, bitcast=True)
        hi = (p & -65536).to(tl.float32, bitcast=True)
    else:
        lo = _half(p, False)
        hi = _half(p, True)
    return lo, hi


@triton.jit
def _prep(p0, p1, p2, p3, BITS: tl.constexpr, BF16: tl.constexpr, ASM: tl.constexpr):
    """Four words of natural input pairs per chunk [C] -> packed scaled fp16 pairs X0..X3 [C] (int32)
    and inv [C] (fp32), as engine/kernels/ptx_gemv.py's PREP strings."""
    if ASM:
        if BITS == 4:
            text: tl.constexpr = PREP4_BF16 if BF16 else PREP4_F16
        else:
            text: tl.constexpr = PREP8_BF16 if BF16 else PREP8_F16
        x0, x1, x2, x3, inv = tl.inline_asm_elementwise(
            text,
            "=r,=r,=r,=r,=r,r,r,r,r",
            [p0, p1, p2, p3],
            dtype=(tl.int32, tl.int32, tl.int32, tl.int32, tl.float32),
            is_pure=True,
            pack=1,
        )
    else:
        f0, f1 = _inputs(p0, BF16)
        f2, f3 = _inputs(p1, BF16)
        f4, f5 = _inputs(p2, BF16)
        f6, f7 = _inputs(p3, BF16)
        m = tl.maximum(tl.maximum(tl.maximum(tl.abs(f0), tl.abs(f1)), tl.maximum(tl.abs(f2), tl.abs(f3))),
                       tl.maximum(tl.maximum(tl.abs(f4), tl.abs(f5)), tl.maximum(tl.abs(f6), tl.abs(f7))))  # fmt: skip
        b = m.to(tl.int32, bitcast=True) >> 23
        s = ((253 - b) << 23).to(tl.float32, bitcast=True)
        inv = ((b + 1) << 23).to(tl.float32, bitcast=True)
        if BITS == 4:
            s16 = s * 0.0625
            x0 = _pack(f4 * s, f0 * s)
            x1 = _pack(f5 * s16, f1 * s16)
            x2 = _pack(f6 * s, f2 * s)
            x3 = _pack(f7 * s16, f3 * s16)
        else:
            x0 = _pack(f1 * s, f0 * s)
            x1 = _pack(f3 * s, f2 * s)
            x2 = _pack(f5 * s, f4 * s)
            x3 = _pack(f7 * s, f6 * s)
    return x0, x1, x2, x3, inv


@triton.jit
def _pair_dot(t, z, x):
    """Reference of one packed multiply-add: sum over both halves of (t - z) * x, in fp32."""
    return (_half(t, False) - _half(z, False)) * _half(x, False) + (_half(t, True) - _half(z, True)) * _half(
        x, True
    )


@triton.jit
def _dot(wa, wb, x0, x1, x2, x3, zz, zz16, inv, BITS: tl.constexpr, ASM: tl.constexpr):
    """Codes of one chunk per row (wa, and wb for 8 bits: [BLOCK_N, C] int32) times the prepared inputs
    -> fp32 partial sums [BLOCK_N, C] (DOT4 / DOT8 of engine/kernels/ptx_gemv.py)."""
    if ASM:  # (DOT4 ignores wb, DOT8 zz16)
        text: tl.constexpr = DOT4 if BITS == 4 else DOT8
        args = [wa, wb, x0, x1, x2, x3, zz, zz16, inv]
        out = tl.inline_asm_elementwise(text, "=r" + ",r" * 9, args, dtype=tl.float32, is_pure=True, pack=1)
    elif BITS == 4:
        k = 0x64006400
        w8 = wa >> 8
        out = _pair_dot((wa & 0x000F000F) | k, zz, x0) + _pair_dot((wa & 0x00F000F0) | k, zz16, x1)
        out += _pair_dot((w8 & 0x000F000F) | k, zz, x2) + _pair_dot((w8 & 0x00F000F0) | k, zz16, x3)
        out *= inv
    else:
        k = 0x64006400
        t0 = ((wa & 0xFF) | ((wa & 0xFF00) << 8)) | k
        t1 = (((wa >> 16) & 0xFF) | (((wa >> 24) & 0xFF) << 16)) | k
        t2 = ((wb & 0xFF) | ((wb & 0xFF00) << 8)) | k
        t3 = (((wb >> 16) & 0xFF) | (((wb >> 24) & 0xFF) << 16)) | k
        out = (
            _pair_dot(t0, zz, x0) + _pair_dot(t1, zz, x1) + _pair_dot(t2, zz, x2) + _pair_dot(t3, zz, x3)
        ) * inv
    return out


@triton.jit
def _load_codes(rows, scales, zeros, offs_n, n_mask, g, g_end, GROUPS, ROW_WORDS, BITS: tl.constexpr,
                BLOCK_N: tl.constexpr):  # fmt: skip
    """Group g's codes of the program's rows (wa, and wb for 8 bits: [BLOCK_N, 16] int32 words), its
    fp32 scales and integer zeros [BLOCK_N]; zeros of all kinds (no memory read) where g >= g_end."""
    mask = n_mask & (g < g_end)
    meta = offs_n * GROUPS + g
    scale = tl.load(scales + meta, mask=mask, other=0.0).to(tl.float32)
    if BITS == 8:
        zero = tl.load(zeros + meta, mask=mask, other=0).to(tl.int32)
        word = g * 32 + tl.arange(0, 32)  # in terms of words, so that Triton can vectorize the loads
        both = tl.load(rows + word[None, :], mask=mask[:, None] & (word < ROW_WORDS)[None, :], other=0)
        wa, wb = tl.split(tl.reshape(both, (BLOCK_N, 16, 2)))
    else:
        zero = (tl.load(zeros + meta // 2, mask=mask, other=0).to(tl.int32) >> ((meta % 2) * 4)) & 15
        word = g * 16 + tl.arange(0, 16)
        wa = tl.load(rows + word[None, :], mask=mask[:, None] & (word < ROW_WORDS)[None, :], other=0)
        wb = wa
    return wa, wb, scale, zero


@triton.jit
def _group(pairs, g, K, wa, wb, scale, zero, BITS: tl.constexpr, BF16: tl.constexpr, ASM: tl.constexpr):
    """Group g: its 16 chunks of x prepared, times the codes -> fp32 partial sums [BLOCK_N, 16]."""
    first = g * 128 + tl.arange(0, 16) * 8  # each chunk's first input
    c_mask = first < K
    p = pairs + first // 2
    x0, x1, x2, x3, inv = _prep(
        tl.load(p, mask=c_mask, other=0),
        tl.load(p + 1, mask=c_mask, other=0),
        tl.load(p + 2, mask=c_mask, other=0),
        tl.load(p + 3, mask=c_mask, other=0),
        BITS,
        BF16,
        ASM,
    )
    zz = ((zero | 0x6400) * 65537)[:, None]  # fp16 pair (1024 + zero, 1024 + zero)
    zz16 = (((zero * 16) | 0x6400) * 65537)[:, None]
    part = _dot(wa, wb, x0[None, :], x1[None, :], x2[None, :], x3[None, :], zz, zz16, inv[None, :], BITS, ASM)
    return part * scale[:, None]


@triton.jit
def _gemv_kernel(
    x,
    codes,
    scales,
    zeros,
    y,  # [N] in x's dtype
    partial,  # [SPLITS, N] fp32 (SPLITS > 1)
    N,
    K,
    ROW_WORDS,  # K * BITS / 32: a row's words (an argument, so that Triton sees its divisibility)
    GROUPS,
    GROUPS_PER_SPLIT,
    SPLITS,
    s_ps,
    BITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BF16: tl.constexpr,
    ASM: tl.constexpr,
    STAGES: tl.constexpr,  # loads of the next groups in flight (the compiler's software pipeline)
    PDL: tl.constexpr = False,  # launched with programmatic dependent launch (engine/kernels/launch.py)
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    pairs = x.to(tl.pointer_type(tl.int32), bitcast=True)  # word i = inputs 2i, 2i + 1
    words = codes.to(tl.pointer_type(tl.int32), bitcast=True)
    rows = words + offs_n[:, None].to(tl.int64) * ROW_WORDS
    g_start = pid_s * GROUPS_PER_SPLIT
    g_end = tl.minimum(GROUPS, g_start + GROUPS_PER_SPLIT)
    # No earlier kernel writes the weights: the first group's codes are fetched before the wait. (Loading
    # every next group before multiplying the current one, a register double buffer, was slower.)
    wa, wb, scale, zero = _load_codes(rows, scales, zeros, offs_n, n_mask, g_start, g_end, GROUPS,
                                      ROW_WORDS, BITS, BLOCK_N)  # fmt: skip
    await_inputs(PDL)
    acc = _group(pairs, g_start, K, wa, wb, scale, zero, BITS, BF16, ASM)
    for g in tl.range(g_start + 1, g_end, num_stages=STAGES):
        wa, wb, scale, zero = _load_codes(rows, scales, zeros, offs_n, n_mask, g, g_end, GROUPS, ROW_WORDS,
                                          BITS, BLOCK_N)  # fmt: skip
        acc += _group(pairs, g, K, wa, wb, scale, zero, BITS, BF16, ASM)
    total = tl.sum(acc, axis=1)
    if SPLITS == 1:
        tl.store(y + offs_n, total.to(y.dtype.element_ty), mask=n_mask)
    else:  # partial sums, added by the caller (inside the kernel, with tickets: slower)
        tl.store(partial + pid_s * s_ps + offs_n, total, mask=n_mask)


def add_splits(partial: torch.Tensor) -> torch.Tensor:
    """partial [S, ...] -> their sum over S [...], added left to right as S - 1 element-wise adds.

    Under torch.compile the adds are element-wise work that Inductor folds into the kernel consuming
    the sum (the residual add and RMSNorm, SwiGLU, q/k-norm and RoPE), where `partial.sum(0)` is a
    reduction kernel of its own: three per layer, 3.7-5.0 us each at batch 1 on an H200 (folded:
    the Qwen3-8B batch-1 step 1-2 % faster). The order is fixed, so results are
    deterministic."""
    parts = partial.unbind(0)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def split_outputs(x: torch.Tensor, n: int, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-row launch's outputs: y [N] in x's dtype and the partial sums [splits, N] fp32 (y itself
    when there is one split). The kernel writes one of them; the launcher returns that one."""
    y = x.new_empty(n)
    return y, (x.new_empty(splits, n, dtype=torch.float32) if splits > 1 else y)


def splits_for(
    n: int, chunks: int, block_n: int, target_programs: int, min_chunks: int = 2, max_splits: int = 16
) -> int:
    """Split-K factor for N outputs in blocks of block_n over `chunks` chunks of inputs (groups, blocks):
    about `target_programs` programs (many short loops keep more loads in flight than a few long
    ones), at most `max_splits` splits, each with at least `min_chunks` chunks."""
    programs = triton.cdiv(n, block_n)
    return max(1, min(max_splits, chunks // min_chunks, target_programs // programs))


def supports(x: torch.Tensor, w: QuantWeight) -> bool:
    """Whether gemv takes this product: one row of bf16/fp16, K a multiple of 8, word-aligned codes."""
    rows = x.numel() // max(1, x.shape[-1])
    return (
        rows == 1
        and x.dtype in (torch.bfloat16, torch.float16)
        and w.shape[1] % 8 == 0
        # word-aligned codes (torch's allocations are; inside torch.compile, offsets are not known:
        # the engine's weights are whole tensors)
        and (torch.compiler.is_compiling() or w.qweight.storage_offset() % 4 == 0)
    )


class GemvLaunch(NamedTuple):
    """How gemv launches: output rows per program, warps, pipeline stages, the programs split-K aims
    at, and a cap on registers per thread (0: none; the launcher is a custom op, so a cap reaches the
    kernel inside a compiled step)."""

    block_n: int
    num_warps: int
    num_stages: int
    target_programs: int
    maxnreg: int


# Per bit width, the launch measured fastest on an H200 with Qwen3-8B's matrices (bench/weights.py
# --tune-gemv; caps of 96 and 80 registers measured slower at 8 bits).
GEMV_LAUNCH = MappingProxyType({bits: GemvLaunch(64, 2, 1, 2048, 0) for bits in (8, 4)})


@torch.library.custom_op("membudget::gemv_partials", mutates_args=())
def gemv_partials(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bits: int,
    k: int,
    splits: int,
    per_split: int,
    block_n: int,
    num_warps: int,
    num_stages: int,
    maxnreg: int,
) -> torch.Tensor:
    """The kernel's launch as an opaque op (engine/kernels/launch.py): x [1, K], the weight's
    tensors (engine/wquant.py) -> y [N] in x's dtype (one split) or fp32 partial sums [splits, N] over
    ranges of `per_split` groups; `maxnreg` > 0 caps the registers per thread."""
    n = scales.shape[0]
    if x.stride(-1) != 1 or x.storage_offset() % 2:
        x = x.clone()  # contiguous and word-aligned
    y, partial = split_outputs(x, n, splits)
    pdl = use_pdl(x.device)
    cap = {"maxnreg": maxnreg} if maxnreg else {}
    groups = triton.cdiv(k, GROUP)
    _gemv_kernel[(triton.cdiv(n, block_n), splits)](
        x, qweight, scales, zeros, y, partial, n, k, k * bits // 32, groups, per_split, splits,
        partial.stride(0), BITS=bits, BLOCK_N=block_n, BF16=x.dtype == torch.bfloat16, ASM=x.is_cuda,
        STAGES=num_stages, PDL=pdl, num_warps=num_warps, launch_pdl=pdl, **cap,
    )  # fmt: skip
    return y if splits == 1 else partial


@gemv_partials.register_fake
def _(x, qweight, scales, zeros, bits, k, splits, per_split, block_n, num_warps, num_stages, maxnreg):
    return split_outputs(x, scales.shape[0], splits)[splits > 1]


def gemv(
    x: torch.Tensor,
    w: QuantWeight,
    block_n: int | None = None,
    splits: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    target_programs: int | None = None,
) -> torch.Tensor:
    """x [..., K] with one row @ dequantize(w).T -> [..., N] in x's dtype (see `supports`); launch
    settings not given come from GEMV_LAUNCH[w.bits]."""
    n, k = w.shape
    if not supports(x, w):
        raise ValueError(
            f"gemv takes one bf16/fp16 row with K % 8 == 0, not {tuple(x.shape)} {x.dtype}, K={k}"
        )
    x2 = x.reshape(1, k)
    launch = GEMV_LAUNCH[w.bits]
    groups = triton.cdiv(k, GROUP)
    block_n = block_n or launch.block_n
    splits = splits or splits_for(n, groups, block_n, target_programs or launch.target_programs)
    per_split = triton.cdiv(groups, splits)
    splits = triton.cdiv(groups, per_split)
    out = gemv_partials(
        x2, w.qweight, w.scales, w.zeros, w.bits, k, splits, per_split, block_n,
        num_warps or launch.num_warps, num_stages or launch.num_stages, launch.maxnreg,
    )  # fmt: skip
    y = out if splits == 1 else add_splits(out).to(x.dtype)
    return y.view(*x.shape[:-1], n)

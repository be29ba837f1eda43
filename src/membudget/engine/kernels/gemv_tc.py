"""One-row 4-bit weight-only matrix product on the tensor cores (batch-1 decode): y = x @ dequantize(w).T
with the weights as the MMA's A operand and x as every column of its B operand.

The codes stay in engine/wquant.py's row layout (row n at byte n * K / 2, low nibble first). A
program owns TILES tiles of 16 output rows and a range of groups (split-K; partial sums added by
`gemv.add_splits`). Per tile and group of 128 inputs each lane of the warp (g = lane // 4,
t = lane % 4) loads 16 bytes of row g and 16 of row g + 8: the codes of inputs 32t .. 32t + 31 of the
group, four 32-bit words of 8 codes. One word of each row feeds two `mma.m16n8k16`: the k order
inside an MMA is free as long as A and B agree, so the A registers take the codes as a mask and an OR
leave them, (nibble 0, nibble 4), (1, 5), (2, 6), (3, 7) -- each a 16-bit pair 128 + code in bf16
(0x4300 | code; 1024 + code in fp16 for fp16 inputs) -- and B takes x's inputs in the same pairs
(one PRMT per pair, once per group and lane, shared by all tiles; the PTX is engine/kernels/ptx_mma.py). The codes cost one instruction
per weight and lane (three shifts, four LOP3 and one MMA per word of 8 codes); with the loads, x's
pairs and the per-group scale and zero the sm_90 loop takes 2.2 (bench/inspect_kernel.py gemv-tc),
where the packed CUDA-core kernel (engine/kernels/gemv.py) takes 4.4.

Per group the MMAs sum D = sum_k (M + code_k) x_k exactly in fp32 (products of 16-bit numbers are
exact; M = 128 or 1024), one more MMA with an all-ones A gives sum_k x_k, and each row adds
scale * (D - (M + zero) * sum_k x_k). Every column of B is x, so every column of D is the same: the
lanes of a quad hold the same sums and the lane with t = 0 stores them.

Why: on an H200 (Qwen3-8B matrices) it is 20-27 % faster per matrix than the packed kernel, which
makes the 4-bit batch-1 step about 15 % faster. It is latency-bound, not instruction-bound (Nsight
Compute: a warp waits on loads for half of the cycles between its instructions).

An MMA is one instruction of the whole warp: the inline PTX relies on Triton giving its [32, TILES]
operands the layout in which lane l holds index l of dimension 0 (one warp per program; the lane
dimension comes first so that Triton spreads it over the lanes in order; checked in the sm_90 IR by
tests/test_inspect_kernel.py, and on the GPU by the fp64 comparison of bench/weights.py). In the
interpreter (ASM off) the same pairs are multiplied per lane and the quad's sum is a `tl.sum`
(tests/kernels/check_gemv_tc.py). AT_ONCE groups' weights are loaded together before any is
multiplied (2 measured best in the step; a register double buffer was no faster).

Shapes: x [..., K] holding one row (bf16 or fp16, K % 128 == 0), w 4-bit of shape (N, K) with
N % 16 == 0 -> [..., N] in x's dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..wquant import GROUP, QuantWeight
from .gemv import _half, add_splits, split_outputs, splits_for
from .launch import await_inputs, use_pdl
from .ptx_mma import MMA4_BF16, MMA4_F16, ONES_BF16, ONES_F16, PAIRS


@triton.jit
def _pick(i: tl.constexpr, a, b, c, d):
    """The i-th of four tensors (i known at compile time)."""
    if i == 0:
        r = a
    elif i == 1:
        r = b
    elif i == 2:
        r = c
    else:
        r = d
    return r


@triton.jit
def _value(bits, BF16: tl.constexpr):
    """16-bit patterns (int32 < 2**16) -> their bf16 / fp16 values in fp32."""
    if BF16:
        return (bits << 16).to(tl.float32, bitcast=True)
    return _half(bits, False)


@triton.jit
def _pairs(q0, q1, q2, q3, ASM: tl.constexpr):
    """A lane's 8 inputs as 4 words of natural 16-bit pairs (x0, x1) .. (x6, x7) -> the B words of its
    two MMA steps (PAIRS; low half first)."""
    if ASM:
        b0, b1, b2, b3 = tl.inline_asm_elementwise(
            PAIRS, "=r,=r,=r,=r,r,r,r,r", [q0, q1, q2, q3], dtype=(tl.int32,) * 4, is_pure=True, pack=1
        )
    else:
        lo = 0xFFFF
        b0 = (q0 & lo) | (q2 << 16)
        b1 = ((q0 >> 16) & lo) | (q2 & -65536)
        b2 = (q1 & lo) | (q3 << 16)
        b3 = ((q1 >> 16) & lo) | (q3 & -65536)
    return b0, b1, b2, b3


@triton.jit
def _quad_sum(part):
    """[32, TILES] per-lane sums (lane 4g + t) -> the sum over each quad (the four t of a g),
    broadcast back to its lanes."""
    quads = tl.sum(tl.reshape(part, (8, 4, part.shape[1])), axis=1, keep_dims=True)
    return tl.reshape(tl.broadcast_to(quads, (8, 4, part.shape[1])), part.shape)


@triton.jit
def _lane_dot(w, b0, b1, b2, b3, BF16: tl.constexpr):
    """Interpreter reference of one lane's share of MMA4_BF16 / MMA4_F16 for one row: its A pairs as the PTX
    forms them (nibbles j and j + 4 in M) times its four B words, summed in fp32."""
    out = tl.zeros(w.shape, tl.float32)
    for j in tl.static_range(4):
        a = ((w >> (4 * j)) & 0x000F000F) | (0x43004300 if BF16 else 0x64006400)
        pair = _pick(j, b0, b1, b2, b3)
        out += _value(a & 0xFFFF, BF16) * _value(pair & 0xFFFF, BF16)
        out += _value((a >> 16) & 0xFFFF, BF16) * _value((pair >> 16) & 0xFFFF, BF16)
    return out


@triton.jit
def _mma(w, w8, b0, b1, b2, b3, c, BF16: tl.constexpr, ASM: tl.constexpr):
    """Two MMA steps on one word of codes per lane of rows g (w) and g + 8 (w8): [32, TILES] each;
    B words [32, 1]; the accumulator's four registers c (rows g, g, g + 8, g + 8) -> the new four."""
    c0, c1, c2, c3 = c
    if ASM:
        text: tl.constexpr = MMA4_BF16 if BF16 else MMA4_F16
        d = tl.inline_asm_elementwise(
            text, "=r,=r,=r,=r" + ",r" * 10, [w, w8, b0, b1, b2, b3, c0, c1, c2, c3],
            dtype=(tl.float32,) * 4, is_pure=True, pack=1,
        )  # fmt: skip
    else:
        dg = _quad_sum(_lane_dot(w, b0, b1, b2, b3, BF16))
        dg8 = _quad_sum(_lane_dot(w8, b0, b1, b2, b3, BF16))
        d = (c0 + dg, c1 + dg, c2 + dg8, c3 + dg8)
    return d


@triton.jit
def _ones(q0, q1, q2, q3, c, BF16: tl.constexpr, ASM: tl.constexpr):
    """c (four registers) + the sum of a quad's inputs of two MMA steps (a lane's natural pairs q
    [32, 1]), the same in every register and lane of the quad."""
    c0, c1, c2, c3 = c
    if ASM:
        text: tl.constexpr = ONES_BF16 if BF16 else ONES_F16
        d = tl.inline_asm_elementwise(text, "=r,=r,=r,=r" + ",r" * 8, [q0, q1, q2, q3, c0, c1, c2, c3],
                                      dtype=(tl.float32,) * 4, is_pure=True, pack=1)  # fmt: skip
    else:
        part = tl.zeros(q0.shape, tl.float32)
        for j in tl.static_range(4):
            p = _pick(j, q0, q1, q2, q3)
            part += _value(p & 0xFFFF, BF16) + _value((p >> 16) & 0xFFFF, BF16)
        s = _quad_sum(part)
        d = (c0 + s, c1 + s, c2 + s, c3 + s)
    return d


@triton.jit
def _split4(words):
    """[A, B, 4] -> its four [A, B] slices (each thread holds all four: no data moves)."""
    a, b = tl.split(tl.reshape(words, (words.shape[0], words.shape[1], 2, 2)))  # a: words 0, 2; b: 1, 3
    w0, w2 = tl.split(a)
    w1, w3 = tl.split(b)
    return w0, w1, w2, w3


@triton.jit
def _load_weights(rows, quad, scales, zeros, meta, row_ok, grp, g_end, ROW_WORDS, GROUPS):
    """What group grp reads of the weight (zeros, no memory read, where grp >= g_end): the lanes' 16
    bytes of rows g and g + 8 of every tile (inputs 32t .. 32t + 31 of the group; [32, TILES, 4] int32
    each), their scales (fp32) and zeros (int32) ([32, TILES] each)."""
    mask = row_ok & (grp < g_end)
    wg = tl.load(rows + grp * 16 + quad, mask=mask[:, :, None], other=0)
    wg8 = tl.load(rows + 8 * ROW_WORDS + grp * 16 + quad, mask=mask[:, :, None], other=0)
    m = meta + grp
    m8 = m + 8 * GROUPS
    zg = (tl.load(zeros + m // 2, mask=mask, other=0).to(tl.int32) >> ((m % 2) * 4)) & 15
    zg8 = (tl.load(zeros + m8 // 2, mask=mask, other=0).to(tl.int32) >> ((m8 % 2) * 4)) & 15
    sg = tl.load(scales + m, mask=mask, other=0.0).to(tl.float32)
    sg8 = tl.load(scales + m8, mask=mask, other=0.0).to(tl.float32)
    return wg, wg8, sg, sg8, zg, zg8


@triton.jit
def _load_run(rows, quad, scales, zeros, meta, row_ok, g0, g_end, ROW_WORDS, GROUPS, AT_ONCE: tl.constexpr):
    """The weights of AT_ONCE (1, 2 or 4) groups from g0 on, loaded together, so that a row's codes
    arrive as one run of 64 * AT_ONCE bytes: four _load_weights tuples (the unused ones repeat the
    first)."""
    w0 = _load_weights(rows, quad, scales, zeros, meta, row_ok, g0, g_end, ROW_WORDS, GROUPS)
    w1 = w0
    w2 = w0
    w3 = w0
    if AT_ONCE >= 2:
        w1 = _load_weights(rows, quad, scales, zeros, meta, row_ok, g0 + 1, g_end, ROW_WORDS, GROUPS)
    if AT_ONCE >= 4:
        w2 = _load_weights(rows, quad, scales, zeros, meta, row_ok, g0 + 2, g_end, ROW_WORDS, GROUPS)
        w3 = _load_weights(rows, quad, scales, zeros, meta, row_ok, g0 + 3, g_end, ROW_WORDS, GROUPS)
    return w0, w1, w2, w3


@triton.jit
def _load_inputs(pairs, lanes, grp, g_end):
    """The lane's 32 inputs of group grp as four [32, 1, 4] words of pairs (word i: inputs 32t + 8i ..
    32t + 8i + 7)."""
    ok = grp < g_end
    p = pairs + grp * 64 + lanes
    return (
        tl.load(p, mask=ok, other=0),
        tl.load(p + 4, mask=ok, other=0),
        tl.load(p + 8, mask=ok, other=0),
        tl.load(p + 12, mask=ok, other=0),
    )


@triton.jit
def _group(weights, inputs, BF16: tl.constexpr, ASM: tl.constexpr):
    """One group's contribution to rows g and g + 8 of every tile, given what it reads (_load_weights,
    _load_inputs): two [32, TILES] fp32."""
    wg = _split4(weights[0])
    wg8 = _split4(weights[1])
    zero = tl.zeros(weights[2].shape, tl.float32)
    d = (zero, zero, zero, zero)
    zero1 = tl.zeros((32, 1), tl.float32)
    sx = (zero1, zero1, zero1, zero1)
    for i in tl.static_range(4):  # word i of each lane
        q0, q1, q2, q3 = _split4(_pick(i, *inputs))
        b0, b1, b2, b3 = _pairs(q0, q1, q2, q3, ASM)
        d = _mma(_pick(i, *wg), _pick(i, *wg8), b0, b1, b2, b3, d, BF16, ASM)
        sx = _ones(q0, q1, q2, q3, sx, BF16, ASM)
    magic = 128 if BF16 else 1024
    sg, sg8, zg, zg8 = weights[2], weights[3], weights[4], weights[5]
    out = sg * (d[0] - (zg + magic).to(tl.float32) * sx[0])
    out8 = sg8 * (d[2] - (zg8 + magic).to(tl.float32) * sx[0])
    return out, out8


@triton.jit
def _gemv_tc_kernel(
    x,
    codes,
    scales,
    zeros,
    y,  # [N] in x's dtype (SPLITS == 1)
    partial,  # [SPLITS, N] fp32 (SPLITS > 1)
    N,
    ROW_WORDS,  # K / 8: a row's 32-bit words
    GROUPS,
    GROUPS_PER_SPLIT,
    SPLITS,
    s_ps,
    TILES: tl.constexpr,
    BF16: tl.constexpr,
    ASM: tl.constexpr,
    AT_ONCE: tl.constexpr,  # groups whose weights are loaded together: 1, 2 or 4
    PDL: tl.constexpr = False,
):
    # Every tensor is [32 lanes, TILES(, 4)]: the lane dimension first, so that Triton spreads it over
    # the warp's lanes in order (lane 4g + t) and keeps the tiles and a lane's 4 words in registers.
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    lane = tl.arange(0, 32)[:, None]
    g = lane // 4
    t = lane % 4
    row = pid_n * (16 * TILES) + tl.arange(0, TILES)[None, :] * 16 + g  # [32, TILES]; also row + 8
    row_ok = row < N
    words = codes.to(tl.pointer_type(tl.int32), bitcast=True)
    pairs = x.to(tl.pointer_type(tl.int32), bitcast=True)  # word i = inputs 2i, 2i + 1
    rows = (words + row.to(tl.int64) * ROW_WORDS)[:, :, None]  # [32, TILES, 1]
    quad = (t * 4)[:, :, None] + tl.arange(0, 4)[None, None, :]  # [32, 1, 4]: lane t's words 4t .. 4t + 3
    lanes = (t * 16)[:, :, None] + tl.arange(0, 4)[None, None, :]  # [32, 1, 4]: its input pairs 16t + 4i + j
    meta = row * GROUPS  # [32, TILES]: the row's scales / zeros start
    g_start = pid_s * GROUPS_PER_SPLIT
    g_end = tl.minimum(GROUPS, g_start + GROUPS_PER_SPLIT)
    # no earlier kernel writes the weights: the first ones are fetched before the wait
    run = _load_run(rows, quad, scales, zeros, meta, row_ok, g_start, g_end, ROW_WORDS, GROUPS, AT_ONCE)
    await_inputs(PDL)
    acc = tl.zeros((32, TILES), tl.float32)
    acc8 = tl.zeros((32, TILES), tl.float32)
    for g0 in range(g_start, g_end, AT_ONCE):
        if g0 > g_start:
            run = _load_run(rows, quad, scales, zeros, meta, row_ok, g0, g_end, ROW_WORDS, GROUPS, AT_ONCE)
        for u in tl.static_range(AT_ONCE):
            part, part8 = _group(_pick(u, *run), _load_inputs(pairs, lanes, g0 + u, g_end), BF16, ASM)
            acc += part
            acc8 += part8
    first = row_ok & (t == 0)  # the quad's four lanes hold the same sums
    if SPLITS == 1:
        tl.store(y + row, acc.to(y.dtype.element_ty), mask=first)
        tl.store(y + row + 8, acc8.to(y.dtype.element_ty), mask=first)
    else:
        tl.store(partial + pid_s * s_ps + row, acc, mask=first)
        tl.store(partial + pid_s * s_ps + row + 8, acc8, mask=first)


def supports(x: torch.Tensor, w: QuantWeight) -> bool:
    """Whether gemv_tc takes this product: one row of bf16/fp16, a 4-bit weight with N % 16 == 0 and
    K % 128 == 0 (whole groups, rows word-aligned), on a GPU with bf16 MMAs (compute capability 8+)
    or in the interpreter."""
    n, k = w.shape
    rows = x.numel() // max(1, x.shape[-1])
    return (
        rows == 1
        and w.bits == 4
        and x.dtype in (torch.bfloat16, torch.float16)
        and n % 16 == 0
        and k % GROUP == 0
        and (not x.is_cuda or torch.cuda.get_device_capability(x.device)[0] >= 8)
        and (torch.compiler.is_compiling() or w.qweight.storage_offset() % 4 == 0)
    )


class TcLaunch(NamedTuple):
    """How gemv_tc launches: tiles of 16 rows per program (one warp), the programs split-K aims at,
    groups loaded at once, the most splits (each adds a row of partial sums that the consuming kernel
    reads: at one row it is one program)."""

    tiles: int
    target_programs: int
    at_once: int
    max_splits: int


# the launch measured fastest on an H200 with Qwen3-8B's matrices (bench/weights.py --tune-tc)
TC_LAUNCH = TcLaunch(tiles=2, target_programs=2048, at_once=2, max_splits=16)


@torch.library.custom_op("membudget::gemv_tc_partials", mutates_args=())
def gemv_tc_partials(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    k: int,
    splits: int,
    per_split: int,
    tiles: int,
    at_once: int,
) -> torch.Tensor:
    """The kernel's launch as an opaque op (engine/kernels/launch.py): x [1, K], the weight's tensors ->
    y [N] in x's dtype (one split) or fp32 partial sums [splits, N] over ranges of `per_split` groups."""
    n = scales.shape[0]
    if x.stride(-1) != 1 or x.storage_offset() % 2:
        x = x.clone()  # contiguous and word-aligned
    y, partial = split_outputs(x, n, splits)
    pdl = use_pdl(x.device)
    _gemv_tc_kernel[(triton.cdiv(n, 16 * tiles), splits)](
        x, qweight, scales, zeros, y, partial, n, k // 8, k // GROUP, per_split, splits, partial.stride(0),
        TILES=tiles, BF16=x.dtype == torch.bfloat16, ASM=x.is_cuda, AT_ONCE=at_once, PDL=pdl, num_warps=1, launch_pdl=pdl,
    )  # fmt: skip
    return y if splits == 1 else partial


@gemv_tc_partials.register_fake
def _(x, qweight, scales, zeros, k, splits, per_split, tiles, at_once):
    return split_outputs(x, scales.shape[0], splits)[splits > 1]


def gemv_tc(
    x: torch.Tensor,
    w: QuantWeight,
    tiles: int | None = None,
    splits: int | None = None,
    target_programs: int | None = None,
    at_once: int | None = None,
) -> torch.Tensor:
    """x [..., K] with one row @ dequantize(w).T -> [..., N] in x's dtype (see `supports`); launch
    settings not given come from TC_LAUNCH."""
    n, k = w.shape
    if not supports(x, w):
        raise ValueError(
            f"gemv_tc takes one bf16/fp16 row and a 4-bit weight with N % 16 == 0 and K % 128 == 0, not "
            f"{tuple(x.shape)} {x.dtype}, {w.bits}-bit ({n}, {k})"
        )
    tiles = tiles or TC_LAUNCH.tiles
    groups = k // GROUP
    target = target_programs or TC_LAUNCH.target_programs
    splits = splits or splits_for(n, groups, 16 * tiles, target, max_splits=TC_LAUNCH.max_splits)
    per_split = triton.cdiv(groups, splits)
    splits = triton.cdiv(groups, per_split)
    at_once = at_once or TC_LAUNCH.at_once
    if at_once not in (1, 2, 4):
        raise ValueError(f"at_once is 1, 2 or 4 groups, not {at_once}")
    out = gemv_tc_partials(
        x.reshape(1, k), w.qweight, w.scales, w.zeros, k, splits, per_split, tiles, at_once
    )
    y = out if splits == 1 else add_splits(out).to(x.dtype)
    return y.view(*x.shape[:-1], n)

"""Split-KV decode attention over an 8- or 4-bit cache without dequantizing it: scales and zeros are
applied to dot products, not to elements. `split_kv_decode_quant` (at the end) is the entry point for
every quantized cache: this kernel where it applies, else the dequantizing one of attention.py.

For one slot n and one group g of 64 elements, k = c * s + z (engine/kvquant.py), so
    q . k  = sum_g  s_ng * (q_g . c_ng)  +  z_ng * sum(q_g)
    sum_n p_n v_n (group g)  =  sum_n (p_n * s_ng) * c_ng  +  sum_n p_n * z_ng.
The codes c go to the tensor cores as they are: an fp16 whose bits are 0x6400 | c is 1024 + c exactly,
so one OR and one subtraction turn a byte into its code (no int-to-float conversion, no multiply-add
per element; on the GPU inline PTX does it four bytes at a time, engine/kernels/ptx_codes.py). The code dot
products q_g . c_ng run per group; the value side needs p * s per group, so the query heads are
stacked twice: row r = 8 * g + h of a 16-row tile holds head h for group g (the tensor cores pad to
16 rows anyway). Group g's value product takes p * s with the other group's rows zeroed, so one
accumulator holds, in row r, the columns of group g(r).
4-bit codes are split into their low nibbles (even elements) and high nibbles (odd elements), each
multiplied with the matching even or odd query (or output) columns.

Supports 8 and 4 bits, head_dim 64 or 128 (one or two groups), up to 8 query heads per KV head and a
16-bit query; `split_kv_decode_quant` falls back to the dequantizing kernel otherwise. The exact ring
of the newest 128 slots and the split/merge scheme are as in engine/kernels/attention.py; partial
outputs are fp16 (many splits: half the traffic) and are merged by its merge kernel or, given
tickets, by the last split program (`merge_if_last`). With WRITE, the
first split of each (row, KV head) also quantizes the step's new token into the codes
(engine/kernels/kvwrite.py): this call never reads the codes of a row's newest 128 slots.

On an H200 (Qwen3-8B shape, 16 rows) it reads an 8-bit cache faster than the 16-bit kernel reads a
16-bit one of the same length, and a 4-bit cache in about 0.7x of that time; the dequantizing
kernel takes 1.5-2x as long. Launch settings per bit width are in FAST_LAUNCH (below).
Tested on the CPU with TRITON_INTERPRET=1 (fp16 queries; tests/kernels/check_split_kv.py,
check_kvwrite.py).

Value codes grouped by 4 slots (engine/kvquant.py, the 4-bit CUDA store's layout) reach the value
product's operand as 32-bit words, where slot-major codes need a byte gather (one-byte shared-memory
loads and PRMTs): 12 % less time at 4 bits.

Shapes: q [G, H, 1, D]; codes [G, H_kv, C, D*bits/8] (value codes also grouped: [G, H_kv, C/4,
D*bits/8, 4]), scale/zero [G, H_kv, C, D/64], rings [G, H_kv, <=128, D]; lengths [G] -> out [G, H, 1, D].
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..kvquant import fast_kernel_applies
from .attention import launch_settings, launch_split_kv, program_range
from .kvwrite import quantize_write, same_row_strides, slot_offsets, write_codes
from .merge import merge, merge_if_last
from .ptx_codes import codes_to

V_SCALE = tl.constexpr(256.0)  # p * s is kept in fp16 times 2**8, away from fp16's subnormals


@triton.jit
def _meta(scales, zeros, offs_n, n_mask, GROUPS: tl.constexpr):
    """fp32 scales and zeros [BLOCK_N] of groups 0 and 1 of slots offs_n. With two groups the two fp16
    of a slot are read as one 32-bit word (a 4-byte load is prefetched by the compiler's pipeline; a
    2-byte one is not). if/else, not an early return: Triton compiles the code after a constexpr
    `if ...: return` too, and `_half` does not compile on fp16 pointers (head_dim 64)."""
    if GROUPS == 1:
        s0 = tl.load(scales + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        z0 = tl.load(zeros + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        s1, z1 = s0, z0
    else:
        ws = tl.load(scales + offs_n, mask=n_mask, other=0)
        wz = tl.load(zeros + offs_n, mask=n_mask, other=0)
        s0, z0, s1, z1 = _half(ws, 0), _half(wz, 0), _half(ws, 16), _half(wz, 16)
    return s0, z0, s1, z1


@triton.jit
def _half(word, SHIFT: tl.constexpr):
    """The fp16 in bits SHIFT..SHIFT+15 of int32 words, as fp32."""
    return ((word >> SHIFT) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _per_row(grp, first, second, GROUPS: tl.constexpr):
    """[16, BLOCK_N]: row r takes `first` [BLOCK_N] if its group grp[r] is 0, else `second`."""
    if GROUPS == 1:
        out = tl.broadcast_to(first[None, :], (grp.shape[0], first.shape[0]))
    else:
        out = tl.where(grp[:, None] == 0, first[None, :], second[None, :])
    return out


@triton.jit
def _q_columns(Q, g, s_qg, s_qh, heads, row_ok, cols):
    return tl.load(Q + g * s_qg + heads[:, None] * s_qh + cols[None, :], mask=row_ok[:, None], other=0.0)


@triton.jit
def _code_dot(qa, qb, b, BITS: tl.constexpr, ASM: tl.constexpr):
    """Query columns of one group, fp16 [16, W] (qb: the odd ones at 4 bits), times the codes in
    bytes b [BLOCK_N, W] -> [16, BLOCK_N] fp32."""
    if BITS == 8:
        return tl.dot(qa, tl.trans(codes_to(b, 255, 0, False, ASM)))
    qk = tl.dot(qa, tl.trans(codes_to(b, 15, 0, False, ASM)))
    return tl.dot(qb, tl.trans(codes_to(b, 15, 4, False, ASM)), qk)


@triton.jit
def _add_code_values(acc_a, acc_b, ps, b, BITS: tl.constexpr, ASM: tl.constexpr):
    """Value columns [16, W] (acc_b: the odd ones at 4 bits) plus ps [16, BLOCK_N] times the codes in
    bytes b [BLOCK_N, W]."""
    if BITS == 8:
        return tl.dot(ps, codes_to(b, 255, 0, False, ASM), acc_a), acc_b
    acc_a = tl.dot(ps, codes_to(b, 15, 0, False, ASM), acc_a)
    return acc_a, tl.dot(ps, codes_to(b, 15, 4, False, ASM), acc_b)


@triton.jit
def _ring_tile(ring, slots, cols, n_mask, STEP: tl.constexpr):
    """Exact 16-bit entries [BLOCK_N, W]: rows at ring + slots [BLOCK_N, 1], columns cols * STEP."""
    return tl.load(ring + slots + cols[None, :] * STEP, mask=n_mask[:, None], other=0.0)


@triton.jit
def _ring_dot(qa, qb, ring, slots, cols, n_mask, BITS: tl.constexpr):
    """As _code_dot for exact ring keys; `ring` points at the group's first column."""
    qk = tl.dot(qa, tl.trans(_ring_tile(ring, slots, cols, n_mask, 1 if BITS == 8 else 2)))
    if BITS == 4:
        qk = tl.dot(qb, tl.trans(_ring_tile(ring + 1, slots, cols, n_mask, 2)), qk)
    return qk


@triton.jit
def _add_ring_values(acc_a, acc_b, pv, ring, slots, cols, n_mask, BITS: tl.constexpr):
    """As _add_code_values for exact ring values; `ring` points at the group's first column."""
    v = _ring_tile(ring, slots, cols, n_mask, 1 if BITS == 8 else 2)
    acc_a = tl.dot(pv, v, acc_a)
    if BITS == 4:
        acc_b = tl.dot(pv, _ring_tile(ring + 1, slots, cols, n_mask, 2), acc_b)
    return acc_a, acc_b


@triton.jit
def _softmax_step(qk, n_mask, m_i, l_i, SCALE: tl.constexpr):
    """Online softmax over one block of unscaled scores qk [16, BLOCK_N] -> (p, alpha, m, l)."""
    qk = tl.where(n_mask[None, :], qk * SCALE, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.exp(qk - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    return p, alpha, m_new, l_i * alpha + tl.sum(p, 1)


@triton.jit
def _partial_quant_kernel(
    Q,
    KC,
    KS,
    KZ,
    VC,
    VS,
    VZ,
    KR,
    VR,
    KN,
    VN,
    Lengths,
    Partial,
    LSE,
    Out,
    Tickets,
    s_kng,
    s_knh,
    s_vng,
    s_vnh,
    s_qg,
    s_qh,
    s_cg,
    s_ch,
    s_cc,
    s_og,
    s_oh,
    s_os,
    s_lg,
    s_lh,
    s_sg,
    s_sh,
    s_rg,
    s_rh,
    s_rc,
    s_outg,
    s_outh,
    SCALE: tl.constexpr,
    KV_HEADS: tl.constexpr,
    N_REP: tl.constexpr,
    SPLITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D: tl.constexpr,
    BITS: tl.constexpr,
    WRITE: tl.constexpr,  # also quantize and store the new token KN, VN [G, H_kv, D] at slot length - 1
    ASM: tl.constexpr,  # codes to fp16 by inline PTX (engine/kernels/ptx_codes.py; off in the interpreter)
    BLOCK_S: tl.constexpr,
    MERGE: tl.constexpr,  # the last split program merges (merge.merge_if_last)
    GROUPED_V: tl.constexpr,  # value codes grouped by 4 slots (engine/kvquant.py)
):
    GROUPS: tl.constexpr = D // 64
    W: tl.constexpr = 64 if BITS == 8 else 32  # columns of one code tile (bytes of a group)
    g, kvh, split, length, start, end = program_range(Lengths, KV_HEADS, SPLITS, BLOCK_N)
    cut = tl.maximum(tl.minimum(length - 128, end), start)  # [cut, end): the exact ring
    codes = g * s_cg + kvh * s_ch
    meta = g * s_sg + kvh * s_sh
    if GROUPS == 2:  # the two fp16 of a slot as one int32 word (pointer casts, no torch view: an
        # in-place write through a view of a graph input makes torch.compile copy the whole tensor)
        KS, KZ = KS.to(tl.pointer_type(tl.int32)), KZ.to(tl.pointer_type(tl.int32))
        VS, VZ = VS.to(tl.pointer_type(tl.int32)), VZ.to(tl.pointer_type(tl.int32))
        meta = meta // 2
    # a slot's scales (or zeros) are contiguous and slots follow each other: one word (two groups) or
    # one fp16 (one group) per slot, a stride of 1 the compiler can see
    v_stride = 4 * s_cc if GROUPED_V else s_cc  # value codes: a slot's stride, or a group of 4 slots'
    if WRITE and split == 0:  # its codes are read 128 steps from now, never by this call
        k_new, v_new, slot = KN + g * s_kng + kvh * s_knh, VN + g * s_vng + kvh * s_vnh, length - 1
        write_codes(k_new, KC + codes, KS + meta, KZ + meta, slot, s_cc, 1, BITS, D, GROUPS == 2)
        write_codes(
            v_new, VC + codes, VS + meta, VZ + meta, slot, v_stride, 1, BITS, D, GROUPS == 2, GROUPED_V
        )

    rows = tl.arange(0, 16)
    h = rows % 8
    grp = rows // 8
    heads = kvh * N_REP + h
    q_ok = h < N_REP
    cols = tl.arange(0, W)
    step = 1 if BITS == 8 else 2  # 4-bit: even columns (low nibbles), then odd ones
    # the query's columns of each group (rows of both groups hold the same query)
    qa0 = _q_columns(Q, g, s_qg, s_qh, heads, q_ok, cols * step)
    qa1 = _q_columns(Q, g, s_qg, s_qh, heads, q_ok & (GROUPS == 2), 64 + cols * step)
    sum0 = tl.sum(qa0.to(tl.float32), 1)
    sum1 = tl.sum(qa1.to(tl.float32), 1)
    if BITS == 4:
        qb0 = _q_columns(Q, g, s_qg, s_qh, heads, q_ok, cols * step + 1)
        qb1 = _q_columns(Q, g, s_qg, s_qh, heads, q_ok & (GROUPS == 2), 64 + cols * step + 1)
        sum0 += tl.sum(qb0.to(tl.float32), 1)
        sum1 += tl.sum(qb1.to(tl.float32), 1)
    else:
        qb0, qb1 = qa0, qa1  # unused
    ha0, hb0, ha1, hb1 = qa0.to(tl.float16), qb0.to(tl.float16), qa1.to(tl.float16), qb1.to(tl.float16)

    m_i = tl.full([16], float("-inf"), tl.float32)
    l_i = tl.zeros([16], tl.float32)
    pz = tl.zeros([16], tl.float32)  # sum_n p_n * z_n of the row's group (value zeros)
    # value columns of row r's group (even ones at 4 bits; acc_b: the odd ones): p * s enters the
    # products with the rows of the other group zeroed, so one accumulator serves both groups
    acc_a = tl.zeros([16, W], tl.float32)
    acc_b = tl.zeros([16, W], tl.float32)
    first = grp[:, None] == 0
    for n0 in range(start, cut, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < cut
        tile = offs_n[:, None] * s_cc + cols[None, :]
        # keys: scores = sum_g s_g * (q_g . c_g) + z_g * sum(q_g)
        ks0, kz0, ks1, kz1 = _meta(KS + meta, KZ + meta, offs_n, n_mask, GROUPS)
        kb = tl.load(KC + codes + tile, mask=n_mask[:, None], other=0)
        qk = _code_dot(ha0, hb0, kb, BITS, ASM) * ks0[None, :] + sum0[:, None] * kz0[None, :]
        if GROUPS == 2:
            kb = tl.load(KC + codes + W + tile, mask=n_mask[:, None], other=0)
            qk += _code_dot(ha1, hb1, kb, BITS, ASM) * ks1[None, :] + sum1[:, None] * kz1[None, :]
        p, alpha, m_i, l_i = _softmax_step(qk, n_mask, m_i, l_i, SCALE)
        # values: row r of group g accumulates (p * s_g) . c_g and p . z_g
        vs0, vz0, vs1, vz1 = _meta(VS + meta, VZ + meta, offs_n, n_mask, GROUPS)
        pz = pz * alpha + tl.sum(p * _per_row(grp, vz0, vz1, GROUPS), 1)
        ps = (p * _per_row(grp, vs0, vs1, GROUPS) * V_SCALE).to(tl.float16)
        acc_a, acc_b = acc_a * alpha[:, None], acc_b * alpha[:, None]
        # grouped: a byte column of 4 slots is one word (the value product reduces over slots), read
        # in whole groups of 4 (loads of 4 bytes; the slots past `cut` get p = 0)
        vtile = slot_offsets(offs_n, cols, v_stride, GROUPED_V)
        v_mask = (offs_n // 4) * 4 < cut if GROUPED_V else n_mask
        vb = tl.load(VC + codes + vtile, mask=v_mask[:, None], other=0)
        if GROUPS == 2:
            acc_a, acc_b = _add_code_values(acc_a, acc_b, tl.where(first, ps, 0.0), vb, BITS, ASM)
            group1 = 4 * W if GROUPED_V else W  # byte column W of a slot
            vb = tl.load(VC + codes + group1 + vtile, mask=v_mask[:, None], other=0)
            acc_a, acc_b = _add_code_values(acc_a, acc_b, tl.where(first, 0.0, ps), vb, BITS, ASM)
        else:
            acc_a, acc_b = _add_code_values(acc_a, acc_b, ps, vb, BITS, ASM)

    # the ring: exact 16-bit keys and values, the same column split as the codes
    rings = g * s_rg + kvh * s_rh
    for n0 in range(cut, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        slots = (offs_n % 128)[:, None] * s_rc
        qk = _ring_dot(qa0, qb0, KR + rings, slots, cols, n_mask, BITS)
        if GROUPS == 2:
            qk += _ring_dot(qa1, qb1, KR + rings + 64, slots, cols, n_mask, BITS)
        p, alpha, m_i, l_i = _softmax_step(qk, n_mask, m_i, l_i, SCALE)
        pz = pz * alpha
        pv = (p * V_SCALE).to(qa0.dtype)
        acc_a, acc_b = acc_a * alpha[:, None], acc_b * alpha[:, None]
        if GROUPS == 2:
            ring0, pv0 = VR + rings, tl.where(first, pv, 0.0)
            acc_a, acc_b = _add_ring_values(acc_a, acc_b, pv0, ring0, slots, cols, n_mask, BITS)
            ring1, pv1 = VR + rings + 64, tl.where(first, 0.0, pv)
            acc_a, acc_b = _add_ring_values(acc_a, acc_b, pv1, ring1, slots, cols, n_mask, BITS)
        else:
            acc_a, acc_b = _add_ring_values(acc_a, acc_b, pv, VR + rings, slots, cols, n_mask, BITS)

    filled = l_i > 0
    norm = tl.where(filled, l_i, 1.0)
    # row r holds its group's columns: group grp[r] starts at column 64 * grp[r]
    base = (
        Partial + g * s_og + heads[:, None] * s_oh + split * s_os + 64 * grp[:, None] + cols[None, :] * step
    )
    row_ok = (q_ok & (grp < GROUPS))[:, None]
    zero_part = (pz / norm)[:, None]
    tl.store(base, acc_a / V_SCALE / norm[:, None] + zero_part, mask=row_ok)
    if BITS == 4:
        tl.store(base + 1, acc_b / V_SCALE / norm[:, None] + zero_part, mask=row_ok)
    lse = tl.where(filled, m_i + tl.log(norm), float("-inf"))
    tl.store(LSE + g * s_lg + heads * s_lh + split, lse, mask=q_ok & (grp == 0))
    if MERGE:
        merge_if_last(
            Tickets, Partial, LSE, Out, g, kvh, s_og, s_oh, s_os, s_lg, s_lh, s_outg, s_outh,
            KV_HEADS, N_REP, SPLITS, BLOCK_S, D, D,
        )  # fmt: skip


def scale_after_dot(
    q, store, lengths, scale, splits, block_n, num_warps, new, tickets, num_stages=3, maxnreg=None
) -> torch.Tensor:
    """Launch this kernel and the merge (arguments as ``split_kv_decode_quant``, all
    given): q [G, H, 1, D] -> [G, H, 1, D]; with `new` = (k, v) [G, H_kv, D] it also writes their codes.
    num_stages: the compiler's pipeline depth (shared memory per program); maxnreg: a register cap
    per thread (more programs per multiprocessor), None for the compiler's choice."""
    caps = {} if maxnreg is None else {"maxnreg": maxnreg}
    kc, ks, kz, vc, vs, vz, kr, vr, bits = store
    g, heads, _, d = q.shape
    kv_heads = kc.shape[1]
    # fp16 partial outputs (normalized averages of values): half the traffic of fp32 at this
    # kernel's many splits
    partial = torch.empty(g, heads, splits, d, dtype=torch.float16, device=q.device)
    lse = torch.empty(g, heads, splits, dtype=torch.float32, device=q.device)
    out = torch.empty(g, heads, 1, d, dtype=q.dtype, device=q.device)
    k_new, v_new = new if new is not None else (q[:, 0], q[:, 0])  # (unused without `new`)
    if k_new.stride(-1) != 1 or v_new.stride(-1) != 1:
        raise ValueError("the new k and v must be contiguous along head_dim")
    if any(t.stride(3) != 1 or t.stride(2) != d // 64 for t in (ks, kz, vs, vz)):
        raise ValueError("the scale-after-dot kernel needs each slot's scales and zeros contiguous")
    grouped = 4 if vc.dim() == 5 else 1  # (the value codes' stride of 4 slots, else of one)
    if not same_row_strides(kc, vc) or vc.stride(2) != grouped * kc.stride(2):
        raise ValueError("the scale-after-dot kernel needs key and value codes of the same layout strides")
    _partial_quant_kernel[(g * kv_heads, splits)](
        q, kc, ks, kz, vc, vs, vz, kr, vr, k_new, v_new, lengths, partial, lse, out,
        lengths if tickets is None else tickets,
        k_new.stride(0), k_new.stride(1), v_new.stride(0), v_new.stride(1),
        q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2),
        partial.stride(0), partial.stride(1), partial.stride(2), lse.stride(0), lse.stride(1),
        ks.stride(0), ks.stride(1), kr.stride(0), kr.stride(1), kr.stride(2), out.stride(0), out.stride(1),
        SCALE=scale, KV_HEADS=kv_heads, N_REP=heads // kv_heads, SPLITS=splits, BLOCK_N=block_n, D=d,
        BITS=bits, WRITE=new is not None, ASM=q.is_cuda, BLOCK_S=triton.next_power_of_2(splits),
        MERGE=tickets is not None, GROUPED_V=vc.dim() == 5, num_warps=num_warps, num_stages=num_stages, **caps,
    )  # fmt: skip
    return merge(partial, lse, out, tickets)


class QuantLaunch(NamedTuple):
    """How the scale-after-dot kernel launches: slots per block, warps, the programs its splits aim at,
    whether it writes the new token's codes itself (else the separate write kernel does), pipeline
    stages, and a register cap per thread (None: the compiler's choice)."""

    block_n: int
    num_warps: int
    programs: int
    write: bool
    stages: int
    maxnreg: int | None


# Per bit width, the launch measured fastest for the scale-after-dot kernel on an H200 (Qwen3-8B
# shape, 16 rows, 16k-32k slots); at 4 bits the separate write
# kernel measured faster than writing inside it; at 4 bits 1,024 programs (8 splits at 16 rows) beat
# 4,096 by 3 % of the step. The register cap reaches eager launches only: torch.compile (2.11)
# compiles a user kernel without `maxnreg`, so the compiled decode step runs this kernel uncapped
# (255 registers, 17 % slower alone).
FAST_LAUNCH = MappingProxyType(
    {8: QuantLaunch(32, 1, 4096, True, 3, None), 4: QuantLaunch(32, 1, 1024, False, 3, 168)}
)


def split_kv_decode_quant(
    q: torch.Tensor,
    store: tuple,
    lengths: torch.Tensor,
    scale: float,
    splits: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    fast: bool | None = None,
    new: tuple | None = None,
    tickets: torch.Tensor | None = None,
    launch: QuantLaunch | None = None,
) -> torch.Tensor:
    """Decode attention over a quantized cache (engine/kvquant.py) without a 16-bit copy of it.
    store = (k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, k_ring, v_ring, bits), codes
    [G, H_kv, C, D*bits/8], scale/zero [G, H_kv, C, D/64], rings [G, H_kv, <=128, D].
    `fast` (default: wherever it applies) picks engine/kernels/quant_attention.py, which applies scales
    to dot products: 8 and 4 bits, head_dim 64 or 128, <= 8 query heads per KV head, 16-bit queries.
    Otherwise each block is dequantized in registers by the kernel above.
    new = (k, v) [G, H_kv, D]: the step's new token, whose codes are written at slot lengths - 1 (the
    caller has written its exact ring entry). tickets: as `split_kv_decode`. launch: the fast
    kernel's (default FAST_LAUNCH[bits])."""
    kc, ks, kz, vc, vs, vz, kr, vr, bits = store
    g, heads, _, d = q.shape
    if fast is None:
        fast = fast_kernel_applies(bits, d, heads, kc.shape[1], q.dtype)
    if vc.dim() == 5 and not fast:
        raise ValueError("value codes grouped by 4 slots are read by the scale-after-dot kernel only")
    launch = launch or FAST_LAUNCH.get(bits)
    if new is not None and not (fast and launch.write):  # else the attention kernel writes
        quantize_write(*new, lengths - 1, store[:6])
        new = None
    if fast:
        splits, block_n, num_warps = launch_settings(launch, g, kc.shape[1], splits, block_n, num_warps)
        return scale_after_dot(
            q, store, lengths, scale, splits, block_n, num_warps, new, tickets, launch.stages, launch.maxnreg
        )
    block_n = block_n or (32 if bits == 8 else 64)  # measured best on an H200
    if d & (d - 1):
        raise ValueError(f"the quantized decode kernel needs a power-of-two head_dim, not {d}")
    tensors = (kc, vc, ks, kz, vs, vz, kr, vr)
    return launch_split_kv(q, tensors, bits, lengths, scale, splits, block_n, num_warps or 4, tickets)

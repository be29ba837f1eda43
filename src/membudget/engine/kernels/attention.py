"""Split-KV decode attention (flash-decoding) in Triton, for the slotted cache.

Small batches under-fill the GPU when one program handles one (row, KV head): with G = 1 and 8 KV
heads only 8 of 132 multiprocessors would work. Here each (row, KV head) is split along the cache into
`splits` chunks of its *valid* length (read from `lengths` on the device, so a CUDA graph replays it
for any length); every program reads its chunk once for all query heads of the group, keeps an online
softmax, and writes a partial output with its log-sum-exp; a second kernel merges the splits. The
split count depends on (rows, KV heads) only, so results do not depend on the cache capacity.
(Fixed 256-slot chunks, which would also make them independent of the batch size, cost 4-5 % at
batch 16 on an H200 and buy nothing while the matrix products differ by batch size anyway.)

Shapes: q [G, H, 1, D]; k, v [G, H_kv, C, D] (last dim contiguous); lengths [G] -> out [G, H, 1, D].
The same kernel reads a quantized cache (BITS > 0: packed codes, per-group scale and zero, and the
exact ring of the newest 128 slots; engine/kvquant.py) and dequantizes each block in registers, so
decode never materializes a 16-bit copy of the cache. That path serves 2-bit caches and shapes the
faster scale-after-dot kernel (engine/kernels/quant_attention.py) does not cover; that module's
`split_kv_decode_quant` is the entry point for quantized caches and picks between the two, which share
the merge (engine/kernels/merge.py).
Tested on the CPU with TRITON_INTERPRET=1 against `decode_attention_reference` and
`quant_decode_attention_reference`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .launch import await_inputs, use_pdl
from .merge import merge, merge_if_last


@triton.jit
def _dequantize_block(
    codes,
    scales,
    zeros,
    offs_n,
    n_mask,
    s_cc,
    s_sc,
    BITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D: tl.constexpr,
):
    """[BLOCK_N, D] fp32 values codes * scale + zero of slots offs_n. Bytes, scales and zeros are read
    as contiguous rows and unpacked in registers (element i of a vector sits in byte i // (8 / BITS)
    at bit (i % (8 / BITS)) * BITS)."""
    PER_BYTE: tl.constexpr = 8 // BITS
    GROUPS: tl.constexpr = D // 64
    offs_b = tl.arange(0, D // PER_BYTE)
    byte = tl.load(codes + offs_n[:, None] * s_cc + offs_b[None, :], mask=n_mask[:, None], other=0).to(
        tl.int32
    )
    if BITS == 8:
        code = byte
    elif BITS == 4:
        code = tl.reshape(tl.join(byte & 15, byte >> 4), (BLOCK_N, D))
    else:
        pairs = tl.join(tl.join(byte & 3, (byte >> 4) & 3), tl.join((byte >> 2) & 3, byte >> 6))
        code = tl.reshape(pairs, (BLOCK_N, D))
    offs_g = tl.arange(0, GROUPS)
    meta = offs_n[:, None] * s_sc + offs_g[None, :]
    scale = tl.load(scales + meta, mask=n_mask[:, None], other=0.0).to(tl.float32)
    zero = tl.load(zeros + meta, mask=n_mask[:, None], other=0.0).to(tl.float32)
    x = tl.reshape(code.to(tl.float32), (BLOCK_N, GROUPS, 64)) * scale[:, :, None] + zero[:, :, None]
    return tl.reshape(x, (BLOCK_N, D))


@triton.jit
def _attend(q, k, v, n_mask, m_i, l_i, acc, SCALE: tl.constexpr):
    """One block of the online softmax: q [BLOCK_H, D], k, v [BLOCK_N, D] -> updated (m, l, acc)."""
    qk = tl.dot(q, tl.trans(k)) * SCALE  # [BLOCK_H, BLOCK_N] fp32
    qk = tl.where(n_mask[None, :], qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.exp(qk - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def program_range(Lengths, KV_HEADS: tl.constexpr, SPLITS: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's (row g, KV head, split) and its slots [start, end) of the row's valid length:
    the length split into SPLITS chunks of whole BLOCK_N blocks (trailing splits may be empty)."""
    pid = tl.program_id(0)
    split = tl.program_id(1)
    g = pid // KV_HEADS
    length = tl.load(Lengths + g).to(tl.int32)
    chunk = tl.cdiv(tl.cdiv(length, SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    return g, pid % KV_HEADS, split, length, start, tl.minimum(start + chunk, length)


@triton.jit
def _partial_kernel(
    Q,
    K,
    V,
    KS,
    KZ,
    VS,
    VZ,
    KR,
    VR,
    Lengths,
    Partial,
    LSE,
    Out,
    Tickets,
    s_qg,
    s_qh,
    s_kg,
    s_kh,
    s_kc,
    s_vg,
    s_vh,
    s_vc,
    s_og,
    s_oh,
    s_os,
    s_lg,
    s_lh,
    s_sg,
    s_sh,
    s_sc,
    s_rg,
    s_rh,
    s_rc,
    s_outg,
    s_outh,
    SCALE: tl.constexpr,  # a constant: torch.compile would pass a float argument as fp64
    KV_HEADS: tl.constexpr,
    N_REP: tl.constexpr,
    SPLITS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BITS: tl.constexpr,  # 0: K, V are 16-bit values; else codes with scales, zeros and rings
    BLOCK_S: tl.constexpr,
    MERGE: tl.constexpr,  # the last split program merges (merge_if_last); else the merge kernel does
    PDL: tl.constexpr = False,  # launched with programmatic dependent launch (engine/kernels/launch.py)
):
    await_inputs(PDL)
    g, kvh, split, length, start, end = program_range(Lengths, KV_HEADS, SPLITS, BLOCK_N)

    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    h_mask = offs_h < N_REP
    d_mask = offs_d < D
    heads = kvh * N_REP + offs_h
    q = tl.load(
        Q + g * s_qg + heads[:, None] * s_qh + offs_d[None, :],
        mask=h_mask[:, None] & d_mask[None, :],
        other=0.0,
    )  # [BLOCK_H, BLOCK_D]

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    k_base = K + g * s_kg + kvh * s_kh
    v_base = V + g * s_vg + kvh * s_vh
    meta = g * s_sg + kvh * s_sh
    rings = g * s_rg + kvh * s_rh
    if BITS == 0:
        for n0 in range(start, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_mask = offs_n < end
            kv_mask = n_mask[:, None] & d_mask[None, :]
            k = tl.load(k_base + offs_n[:, None] * s_kc + offs_d[None, :], mask=kv_mask, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * s_vc + offs_d[None, :], mask=kv_mask, other=0.0)
            m_i, l_i, acc = _attend(q, k, v, n_mask, m_i, l_i, acc, SCALE)
    else:
        # slots [start, cut) come from the codes, [cut, end) (the row's newest 128) from the ring
        cut = tl.maximum(tl.minimum(length - 128, end), start)
        for n0 in range(start, cut, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_mask = offs_n < cut
            k = _dequantize_block(k_base, KS + meta, KZ + meta, offs_n, n_mask, s_kc, s_sc, BITS, BLOCK_N, D)
            v = _dequantize_block(v_base, VS + meta, VZ + meta, offs_n, n_mask, s_vc, s_sc, BITS, BLOCK_N, D)
            m_i, l_i, acc = _attend(q, k.to(q.dtype), v.to(q.dtype), n_mask, m_i, l_i, acc, SCALE)
        for n0 in range(cut, end, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            n_mask = offs_n < end
            ring = (offs_n % 128)[:, None] * s_rc + offs_d[None, :]
            kv_mask = n_mask[:, None] & d_mask[None, :]
            k = tl.load(KR + rings + ring, mask=kv_mask, other=0.0)
            v = tl.load(VR + rings + ring, mask=kv_mask, other=0.0)
            m_i, l_i, acc = _attend(q, k, v, n_mask, m_i, l_i, acc, SCALE)

    filled = l_i > 0
    out = acc / tl.where(filled, l_i, 1.0)[:, None]
    lse = tl.where(filled, m_i + tl.log(tl.where(filled, l_i, 1.0)), float("-inf"))
    tl.store(
        Partial + g * s_og + heads[:, None] * s_oh + split * s_os + offs_d[None, :],
        out,
        mask=h_mask[:, None] & d_mask[None, :],
    )
    tl.store(LSE + g * s_lg + heads * s_lh + split, lse, mask=h_mask)
    if MERGE:
        merge_if_last(
            Tickets, Partial, LSE, Out, g, kvh, s_og, s_oh, s_os, s_lg, s_lh, s_outg, s_outh,
            KV_HEADS, N_REP, SPLITS, BLOCK_S, D, BLOCK_D,
        )  # fmt: skip


def num_splits(rows: int, kv_heads: int, target_programs: int = 264) -> int:
    """Enough splits for about `target_programs` programs (default: two per multiprocessor of an
    H100/H200). It depends on the batch shape only, never on the cache capacity, so a budget
    checkpoint computes exactly what a separate run computes."""
    return max(1, min(triton.cdiv(target_programs, rows * kv_heads), 64))


class AttentionLaunch(NamedTuple):
    """How a split-KV kernel launches: slots per block, warps, and the programs its splits aim at."""

    block_n: int
    num_warps: int
    programs: int


def launch_settings(launch, rows: int, kv_heads: int, splits, block_n, num_warps) -> tuple[int, int, int]:
    """(splits, block_n, num_warps): those given, else from `launch` (an AttentionLaunch, or a
    quant_attention.QuantLaunch)."""
    splits = splits or num_splits(rows, kv_heads, launch.programs)
    return splits, block_n or launch.block_n, num_warps or launch.num_warps


# The 16-bit kernel's launch for several rows and for one. One program per multiprocessor beat two at
# every batch size on an H200 (2-3 %), and 128-slot blocks beat 64 at one row only (about 1 %, and
# lost as much at 16 rows), for Qwen3-0.6B and -8B alike
DENSE_LAUNCH = AttentionLaunch(block_n=64, num_warps=4, programs=132)
DENSE_LAUNCH_ONE_ROW = AttentionLaunch(block_n=128, num_warps=4, programs=132)


def split_kv_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    splits: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    tickets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode attention over a 16-bit cache; see the module docstring for shapes. tickets: int32
    zeros [>= G * H_kv] (left zero) to merge the splits inside the one kernel (`merge_if_last`);
    without them the two kernels run as one opaque op, launched with PDL (engine/kernels/launch.py)."""
    launch = DENSE_LAUNCH_ONE_ROW if q.shape[0] == 1 else DENSE_LAUNCH
    splits, block_n, num_warps = launch_settings(launch, q.shape[0], k.shape[1], splits, block_n, num_warps)
    if tickets is None:
        return dense_attention(q, k, v, lengths, scale, splits, block_n, num_warps)
    return launch_split_kv(q, dense_operands(k, v), 0, lengths, scale, splits, block_n, num_warps, tickets)


def dense_operands(k: torch.Tensor, v: torch.Tensor) -> tuple:
    """The shared kernel's operands (codes, scales, zeros, rings of a quantized cache) for a 16-bit
    cache: the keys and values, and k where a quantized operand goes (BITS = 0 never reads them)."""
    return (k, v, k, k, k, k, k, k)


@torch.library.custom_op("membudget::dense_attention", mutates_args=())
def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    splits: int,
    block_n: int,
    num_warps: int,
) -> torch.Tensor:
    """The split-KV kernel and the merge kernel over a 16-bit cache as one opaque op (shapes as
    `split_kv_decode`)."""
    tensors = dense_operands(k, v)
    return launch_split_kv(q, tensors, 0, lengths, scale, splits, block_n, num_warps, pdl=use_pdl(q.device))


@dense_attention.register_fake
def _(q, k, v, lengths, scale, splits, block_n, num_warps):
    return q.new_empty(q.shape)


def launch_split_kv(
    q, tensors, bits, lengths, scale, splits, block_n, num_warps=4, tickets=None, pdl=False
) -> torch.Tensor:
    k, v, ks, kz, vs, vz, kr, vr = tensors
    g, heads, _, d = q.shape
    kv_heads = k.shape[1]
    n_rep = heads // kv_heads
    splits = splits or num_splits(g, kv_heads)
    partial = torch.empty(g, heads, splits, d, dtype=torch.float32, device=q.device)
    lse = torch.empty(g, heads, splits, dtype=torch.float32, device=q.device)
    out = torch.empty(g, heads, 1, d, dtype=q.dtype, device=q.device)
    block_d = triton.next_power_of_2(d)
    _partial_kernel[(g * kv_heads, splits)](
        q, k, v, ks, kz, vs, vz, kr, vr, lengths, partial, lse, out, lengths if tickets is None else tickets,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1),
        v.stride(2), partial.stride(0), partial.stride(1), partial.stride(2), lse.stride(0), lse.stride(1),
        ks.stride(0), ks.stride(1), ks.stride(2), kr.stride(0), kr.stride(1), kr.stride(2),
        out.stride(0), out.stride(1),
        SCALE=scale, KV_HEADS=kv_heads, N_REP=n_rep, SPLITS=splits,
        BLOCK_H=max(16, triton.next_power_of_2(n_rep)), BLOCK_N=block_n, D=d, BLOCK_D=block_d, BITS=bits,
        BLOCK_S=triton.next_power_of_2(splits), MERGE=tickets is not None, PDL=pdl, num_warps=num_warps,
        launch_pdl=pdl,
    )  # fmt: skip
    return merge(partial, lse, out, tickets, pdl)

"""Write one new token per row into a quantized KV cache: quantize K and V (engine/kvquant.py layout)
and store codes, scales and zeros, in one Triton kernel per layer (`quantize_write`), or inside the
scale-after-dot attention kernel (`write_codes`, engine/kernels/quant_attention.py), which never reads
the codes of a row's newest 128 slots (the exact ring covers them). The ring entry itself is written by
torch before attention. Results are bit-identical to `kvquant.quantize`:
the same fp32 operations with IEEE division, and round-half-to-even done by adding 2**23 (the float
adder rounds to nearest even; the code is then the low mantissa bits).

Shapes: k, v [G, H_kv, D] (the new token of each row); slots [G] (the slot row g writes); codes
[G, H_kv, C, D*bits/8] uint8 (value codes also grouped: [G, H_kv, C/4, D*bits/8, 4], kvquant.py),
scales/zeros [G, H_kv, C, D/64] fp16. Tested on the CPU with
TRITON_INTERPRET=1 (tests/kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _quantize(x, BITS: tl.constexpr, D: tl.constexpr):
    """x [D] fp32 -> packed codes [D * BITS / 8] uint8, scale and zero [D / 64] fp16."""
    LEVELS: tl.constexpr = 2**BITS - 1
    groups = tl.reshape(x, (D // 64, 64))
    lo, hi = tl.min(groups, 1), tl.max(groups, 1)
    scale = tl.math.div_rn(hi - lo, tl.full(lo.shape, LEVELS, tl.float32)).to(tl.float16)
    zero = lo.to(tl.float16)
    step = scale.to(tl.float32)
    step = tl.where(step > 0, step, 1.0)  # a constant group: every code 0
    y = tl.math.div_rn(groups - zero.to(tl.float32)[:, None], tl.broadcast_to(step[:, None], groups.shape))
    y = tl.minimum(tl.maximum(y, 0.0), LEVELS * 1.0)
    code = tl.reshape((y + 8388608.0).to(tl.int32, bitcast=True) & 0x7FFFFF, (D,))  # rint(y)
    if BITS == 8:
        packed = code
    elif BITS == 4:
        even, odd = tl.split(tl.reshape(code, (D // 2, 2)))
        packed = even | (odd << 4)
    else:
        c02, c13 = tl.split(tl.reshape(code, (D // 4, 2, 2)))  # [.., a] = element 4i + 2a (+1)
        c0, c2 = tl.split(c02)
        c1, c3 = tl.split(c13)
        packed = c0 | (c1 << 2) | (c2 << 4) | (c3 << 6)
    return packed.to(tl.uint8), scale, zero


@triton.jit
def slot_offsets(slots, cols, s_c, GROUPED: tl.constexpr):
    """Offsets [N, W] of byte columns `cols` [W] of `slots` [N] in codes of one row and head:
    slot-major (s_c: a slot's stride) or grouped by 4 slots (kvquant.py; s_c: a group's stride)."""
    if GROUPED:
        return (slots // 4)[:, None] * s_c + cols[None, :] * 4 + (slots % 4)[:, None]
    return slots[:, None] * s_c + cols[None, :]


@triton.jit
def write_codes(
    x_ptr, codes, scales, zeros, slot, s_cc, s_sc, BITS: tl.constexpr, D: tl.constexpr, WORDS: tl.constexpr,
    GROUPED: tl.constexpr = False,
):  # fmt: skip
    """Quantize the vector at x_ptr [D] and store its codes, scales and zeros at `slot`. WORDS: the
    scale/zero pointers point at int32 words (two fp16 of a slot per word, head_dim 128). GROUPED: the
    codes are in kvquant's grouped layout (s_cc: the stride of a group of 4 slots)."""
    packed, scale, zero = _quantize(tl.load(x_ptr + tl.arange(0, D)).to(tl.float32), BITS, D)
    if GROUPED:
        tl.store(codes + (slot // 4) * s_cc + slot % 4 + tl.arange(0, D * BITS // 8) * 4, packed)
    else:
        tl.store(codes + slot * s_cc + tl.arange(0, D * BITS // 8), packed)
    if WORDS:
        tl.store(scales + slot * s_sc + tl.arange(0, 1), _word(scale))
        tl.store(zeros + slot * s_sc + tl.arange(0, 1), _word(zero))
    else:
        tl.store(scales + slot * s_sc + tl.arange(0, D // 64), scale)
        tl.store(zeros + slot * s_sc + tl.arange(0, D // 64), zero)


@triton.jit
def _word(pair):
    """fp16 [2] -> int32 [1] holding pair[0] in its low half, pair[1] in its high half."""
    bits = pair.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    lo, hi = tl.split(tl.reshape(bits, (1, 2)))
    return lo | (hi << 16)


@triton.jit
def _write_kernel(
    K, V, Slots, KC, KS, KZ, VC, VS, VZ,
    s_kg, s_kh, s_vg, s_vh, s_cg, s_ch, s_cc, s_vcc, s_sg, s_sh, s_sc,
    KV_HEADS: tl.constexpr, BITS: tl.constexpr, D: tl.constexpr, V_GROUPED: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    g, h = pid // KV_HEADS, pid % KV_HEADS
    slot = tl.load(Slots + g)
    c, s = g * s_cg + h * s_ch, g * s_sg + h * s_sh
    write_codes(K + g * s_kg + h * s_kh, KC + c, KS + s, KZ + s, slot, s_cc, s_sc, BITS, D, False)
    write_codes(V + g * s_vg + h * s_vh, VC + c, VS + s, VZ + s, slot, s_vcc, s_sc, BITS, D, False, V_GROUPED)


def same_row_strides(kc: torch.Tensor, vc: torch.Tensor) -> bool:
    """Whether key and value codes step through rows and KV heads alike (the kernels address both with
    one offset). While compiling the strides are symbolic: the store's, which match."""
    return torch.compiler.is_compiling() or (vc.stride(0), vc.stride(1)) == (kc.stride(0), kc.stride(1))


def quantize_write(k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor, buffers: tuple) -> None:
    """Quantize k, v [G, H_kv, D] and write their codes, scales and zeros at slots [G]; buffers =
    (k_codes, k_scale, k_zero, v_codes, v_scale, v_zero) of one layer (shapes in the module
    docstring). The exact ring entry is the caller's to write."""
    kc, ks, kz, vc, vs, vz = buffers
    g, kv_heads, d = k.shape
    if k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("quantize_write needs k and v contiguous along head_dim")
    if not same_row_strides(kc, vc):
        raise ValueError("quantize_write needs key and value codes of the same row and head strides")
    _write_kernel[(g * kv_heads,)](
        k, v, slots, kc, ks, kz, vc, vs, vz,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1), kc.stride(0), kc.stride(1), kc.stride(2),
        vc.stride(2), ks.stride(0), ks.stride(1), ks.stride(2),
        KV_HEADS=kv_heads, BITS=(kc.shape[-1] * 8) // d, D=d, V_GROUPED=vc.dim() == 5, num_warps=1,
    )  # fmt: skip

"""Inline PTX of the one-row weight-only kernel (engine/kernels/gemv.py): packed 16-bit arithmetic, two
products per instruction, on chunks of 8 inputs.

Inputs side, once per chunk (`PREP4` / `PREP8`, `_BF16` or `_F16` for x's type): the chunk's 8 inputs
(four 32-bit words of natural pairs) are scaled by a power of two so that the largest is below 1 in
magnitude, rounded to fp16 and packed in the pairs the codes side produces; `inv` undoes the scaling.
A power of two only moves the exponent, so the packed values keep all of a bf16's bits.

Codes side, once per chunk and output row (`DOT4` / `DOT8`): the codes become 1024 + code in fp16
(PRMT for bytes, LOP3 for nibbles: the bits of a code in the mantissa of 1024), one packed subtract
of 1024 + zero leaves code - zero exactly, then four packed multiply-adds (fp16, four products per
half: |sum| <= 4 * 255 * 1), and the two halves go to fp32 times `inv`. About 2 instructions per
weight instead of ~6 through fp32.

Pairs (lo half, hi half) for 4-bit codes, word = bytes b0..b3 = inputs 0..7 (low nibble first):
  (w & 0x000F000F) -> inputs (0, 4);  (w & 0x00F000F0) -> (1, 5) as 16 * code;  the same on w >> 8 ->
  (2, 6) and (3, 7). The high nibbles stay in place (16 * code), so their zero is 16 * zero and their
  inputs are scaled by 1 / 16 more. For 8-bit codes (two words) the pairs are the natural ones.

Register order: PREP  $0-$3 = packed inputs X0-X3, $4 = inv (fp32), $5-$8 = the four input words;
DOT4 / DOT8 $0 = fp32 partial, $1, $2 = code words (4 bits: $1 only), $3-$6 = X0-X3, $7 = 1024 +
zero, $8 = 1024 + 16 zero (fp16 pairs; 4 bits only), $9 = inv.
The interpreter cannot run PTX; tests/test_code_ptx.py runs these strings through an emulator.
"""

from __future__ import annotations

import triton.language as tl

_UNPACK_BF16 = (  # a bf16 is the high half of an fp32
    "shl.b32 f0, $5, 16; and.b32 f1, $5, 0xFFFF0000; shl.b32 f2, $6, 16; and.b32 f3, $6, 0xFFFF0000; "
    "shl.b32 f4, $7, 16; and.b32 f5, $7, 0xFFFF0000; shl.b32 f6, $8, 16; and.b32 f7, $8, 0xFFFF0000; "
)
_UNPACK_F16 = "".join(
    f"mov.b32 {{h0, h1}}, ${5 + i}; cvt.f32.f16 f{2 * i}, h0; cvt.f32.f16 f{2 * i + 1}, h1; "
    for i in range(4)
)
# m = the largest magnitude; b its fp32 exponent field; s = 2**(126 - b) (so |x| * s < 1), inv = 1 / s
_SCALE = (
    "abs.f32 m, f0; abs.f32 a, f1; max.f32 m, m, a; abs.f32 a, f2; max.f32 m, m, a; abs.f32 a, f3; "
    "max.f32 m, m, a; abs.f32 a, f4; max.f32 m, m, a; abs.f32 a, f5; max.f32 m, m, a; abs.f32 a, f6; "
    "max.f32 m, m, a; abs.f32 a, f7; max.f32 m, m, a; shr.b32 b, m, 23; mov.b32 s, 253; sub.s32 s, s, b; shl.b32 s, s, 23; "
    "add.s32 b, b, 1; shl.b32 $4, b, 23; sub.s32 s16, s, 0x02000000; "  # s16 = s / 16
)
_HEAD = "{.reg .b32 f0, f1, f2, f3, f4, f5, f6, f7, m, a, b, s, s16; .reg .b16 h0, h1; "
_SCALED = "".join(f"mul.f32 f{i}, f{i}, {{s{i}}}; " for i in range(8))
_PACK4 = (  # cvt.rn.f16x2.f32 d, hi, lo
    "cvt.rn.f16x2.f32 $0, f4, f0; cvt.rn.f16x2.f32 $1, f5, f1; "
    "cvt.rn.f16x2.f32 $2, f6, f2; cvt.rn.f16x2.f32 $3, f7, f3;}"
)
_PACK8 = (
    "cvt.rn.f16x2.f32 $0, f1, f0; cvt.rn.f16x2.f32 $1, f3, f2; "
    "cvt.rn.f16x2.f32 $2, f5, f4; cvt.rn.f16x2.f32 $3, f7, f6;}"
)
_S4 = _SCALED.format(s0="s", s1="s16", s2="s", s3="s16", s4="s", s5="s16", s6="s", s7="s16")
_S8 = _SCALED.format(**{f"s{i}": "s" for i in range(8)})
PREP4_BF16 = tl.constexpr(_HEAD + _UNPACK_BF16 + _SCALE + _S4 + _PACK4)
PREP4_F16 = tl.constexpr(_HEAD + _UNPACK_F16 + _SCALE + _S4 + _PACK4)
PREP8_BF16 = tl.constexpr(_HEAD + _UNPACK_BF16 + _SCALE + _S8 + _PACK8)
PREP8_F16 = tl.constexpr(_HEAD + _UNPACK_F16 + _SCALE + _S8 + _PACK8)

_TAIL = (  # four packed products into one pair, its halves to fp32, times inv
    "mul.rn.f16x2 a, t0, {x0}; fma.rn.f16x2 a, t1, {x1}, a; fma.rn.f16x2 a, t2, {x2}, a; "
    "fma.rn.f16x2 a, t3, {x3}, a; mov.b32 {{h0, h1}}, a; cvt.f32.f16 f0, h0; cvt.f32.f16 f1, h1; "
    "add.f32 f0, f0, f1; mul.f32 $0, f0, {inv};}}"
)
DOT4 = tl.constexpr(
    "{.reg .b32 k, w8, t0, t1, t2, t3, a; .reg .b16 h0, h1; .reg .f32 f0, f1; "
    "mov.b32 k, 0x64006400; shr.b32 w8, $1, 8; "
    "lop3.b32 t0, $1, 0x000F000F, k, 0xea; lop3.b32 t1, $1, 0x00F000F0, k, 0xea; "
    "lop3.b32 t2, w8, 0x000F000F, k, 0xea; lop3.b32 t3, w8, 0x00F000F0, k, 0xea; "
    "sub.f16x2 t0, t0, $7; sub.f16x2 t1, t1, $8; sub.f16x2 t2, t2, $7; sub.f16x2 t3, t3, $8; "
    + _TAIL.format(x0="$3", x1="$4", x2="$5", x3="$6", inv="$9")
)
DOT8 = tl.constexpr(
    "{.reg .b32 m, t0, t1, t2, t3, a; .reg .b16 h0, h1; .reg .f32 f0, f1; mov.b32 m, 0x64646464; "
    "prmt.b32 t0, $1, m, 0x5140; prmt.b32 t1, $1, m, 0x7362; "
    "prmt.b32 t2, $2, m, 0x5140; prmt.b32 t3, $2, m, 0x7362; "
    "sub.f16x2 t0, t0, $7; sub.f16x2 t1, t1, $7; sub.f16x2 t2, t2, $7; sub.f16x2 t3, t3, $7; "
    + _TAIL.format(x0="$3", x1="$4", x2="$5", x3="$6", inv="$9")
)

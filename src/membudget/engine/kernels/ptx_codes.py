"""Packed integer codes -> exact 16-bit floats for the tensor cores, four bytes (one 32-bit register)
per inline-PTX instance, used by the quantized KV attention and the int4 matrix kernels.

The bits of a code placed in the mantissa of a float whose unit is 1 give that float plus the code
exactly: 0x6400 | c is the fp16 1024 + c (c < 1024), 0x4300 | c the bf16 128 + c (c < 128). One PRMT
interleaves two bytes with zero bytes (or, for 8-bit codes, with 0x64), one LOP3 masks a nibble and
ors the exponent in, and one packed subtract or multiply-add removes the offset: four to six
instructions per four bytes instead of ~3 per element (shift, mask, convert, pack). Element i of the
four packed bytes becomes half i of the two output registers ($0 = elements 0, 1; $1 = 2, 3).

The interpreter cannot run PTX: `codes_to` takes the same bit trick per element there (ASM off);
tests/test_code_ptx.py runs these strings through a small emulator of their instructions, and the
GPU benchmarks check the kernels that use them against fp64 references.
"""

from __future__ import annotations

import triton
import triton.language as tl

_START = (  # t0, t1 scratch; m: 0x64 in every byte; the rest fp16 / bf16 constant pairs
    "{.reg .b32 t0, t1, m, k, s, z, kb, one, off; mov.b32 m, 0x64646464; mov.b32 k, 0x64006400; "
    "mov.b32 s, 0x2C002C00; mov.b32 z, 0xD400D400; "  # fp16 1024, 1/16, -64
    "mov.b32 kb, 0x43004300; mov.b32 one, 0x3F803F80; mov.b32 off, 0xC300C300; "  # bf16 128, 1, -128
)
_PAIRS = "prmt.b32 t0, $2, 0, 0x4140; prmt.b32 t1, $2, 0, 0x4342; "  # bytes 0, 1 -> t0; 2, 3 -> t1
_SHIFT4 = "shr.b32 t0, t0, 4; shr.b32 t1, t1, 4; "
_MASK = "lop3.b32 t0, t0, {mask}, {k}, 0xea; lop3.b32 t1, t1, {mask}, {k}, 0xea; "  # (t & mask) | k
F16_BYTES = tl.constexpr(
    _START
    + "prmt.b32 t0, $2, m, 0x5140; prmt.b32 t1, $2, m, 0x7362; sub.f16x2 $0, t0, k; sub.f16x2 $1, t1, k;}"
)
F16_LO = tl.constexpr(
    _START + _PAIRS + _MASK.format(mask="0x000F000F", k="k") + "sub.f16x2 $0, t0, k; sub.f16x2 $1, t1, k;}"
)
F16_HI = tl.constexpr(  # the high nibble stays in place: 1024 + 16 c, times 1/16, minus 64
    _START
    + _PAIRS
    + _MASK.format(mask="0x00F000F0", k="k")
    + "fma.rn.f16x2 $0, t0, s, z; fma.rn.f16x2 $1, t1, s, z;}"
)
_BF16_TAIL = (
    _MASK.format(mask="0x000F000F", k="kb")
    + "fma.rn.bf16x2 $0, t0, one, off; fma.rn.bf16x2 $1, t1, one, off;}"
)
BF16_LO = tl.constexpr(_START + _PAIRS + _BF16_TAIL)
BF16_HI = tl.constexpr(_START + _PAIRS + _SHIFT4 + _BF16_TAIL)  # bf16 has 7 mantissa bits: shift first


@triton.jit
def codes_to(b, MASK: tl.constexpr, SHIFT: tl.constexpr, BF16: tl.constexpr, ASM: tl.constexpr):
    """uint8 tile -> the codes (b >> SHIFT) & MASK as fp16 (or bf16: 4-bit codes only), exactly. ASM:
    by the PTX above (GPU); else the same bit trick per element (the interpreter)."""
    if ASM and BF16:
        text: tl.constexpr = BF16_LO if SHIFT == 0 else BF16_HI
        out = tl.inline_asm_elementwise(text, "=r,=r,r", [b], dtype=tl.bfloat16, is_pure=True, pack=4)
    elif ASM:
        text: tl.constexpr = F16_BYTES if MASK == 255 else (F16_LO if SHIFT == 0 else F16_HI)
        out = tl.inline_asm_elementwise(text, "=r,=r,r", [b], dtype=tl.float16, is_pure=True, pack=4)
    elif BF16:
        out = (((b.to(tl.int16) >> SHIFT) & MASK) | 0x4300).to(tl.bfloat16, bitcast=True) - 128.0
    else:
        out = (((b.to(tl.int16) >> SHIFT) & MASK) | 0x6400).to(tl.float16, bitcast=True) - 1024.0
    return out

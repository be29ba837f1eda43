"""Inline PTX of the one-row 4-bit tensor-core kernel (engine/kernels/gemv_tc.py): `mma.m16n8k16` with
the weights as A and x as every column of B, fp32 accumulators. Each string is warp-collective: it is
correct only where lane l holds index l of its operands' dimension 0 (tests/test_inspect_kernel.py
checks that layout in the sm_90 IR).

`MMA4_*`: two MMA steps on one word of 8 codes of row g ($4) and one of row g + 8 ($5), B words
$6 - $9, the accumulator's four registers C = $10 - $13 -> D = $0 - $3 (rows g, g, g + 8, g + 8:
every column of B is x, so both columns of a row are the same). A registers (row g, row g + 8,
row g, row g + 8) hold nibbles (0, 4), (0, 4), (1, 5), (1, 5) in the first step and (2, 6), (3, 7) in
the second, each shifted down to bits 0-3 of its half and or'ed into M = 128 (bf16, 0x4300) or 1024
(fp16, 0x6400): a nibble higher up would reach a bf16's exponent.
`ONES_*`: sum_k x_k of two MMA steps (A all ones, B = ($4, $5) then ($6, $7), any pairing of the 16
inputs), C = $8 - $11 -> D = $0 - $3, every row the same.
`PAIRS`: a lane's 8 inputs as natural pairs $4 - $7 -> the B words of its two steps (x0, x4),
(x1, x5), (x2, x6), (x3, x7), the pairing of the codes above.

Every input is read before the last MMA writes the outputs, so an output that shares a register with
an input does no harm. The interpreter cannot run PTX: tests/kernels/check_gemv_tc.py runs the
kernel with the same pairs multiplied per lane and summed over the quad; the GPU check is
bench/weights.py's comparison with fp64.
"""

from __future__ import annotations

import triton.language as tl


def _two_steps(kind: str, first: str, second: str, b: int, c: int) -> str:
    """Two chained m16n8k16 MMAs (`kind` bf16 or f16): A registers `first` then `second`, B words
    $b .. $b + 3 (two per step, copied to b0 - b3 first), C = $c .. $c + 3 -> D = $0 .. $3."""
    mma = f"mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32"
    return (
        f"mov.b32 b0, ${b}; mov.b32 b1, ${b + 1}; mov.b32 b2, ${b + 2}; mov.b32 b3, ${b + 3}; "
        f"{mma} {{e0, e1, e2, e3}}, {{{first}}}, {{b0, b1}}, {{${c}, ${c + 1}, ${c + 2}, ${c + 3}}}; "
        f"{mma} {{$0, $1, $2, $3}}, {{{second}}}, {{b2, b3}}, {{e0, e1, e2, e3}};}}"
    )


def _mma4(magic: str, kind: str) -> tl.constexpr:
    codes = "".join(  # A register pairs: nibbles (j, j + 4) of row g's word w and row g + 8's word v
        (f"shr.b32 u, w, {4 * j}; shr.b32 z, v, {4 * j}; " if j else "mov.b32 u, w; mov.b32 z, v; ")
        + f"lop3.b32 a{2 * j}, u, 0x000F000F, k, 0xea; lop3.b32 a{2 * j + 1}, z, 0x000F000F, k, 0xea; "
        for j in range(4)
    )
    return tl.constexpr(
        "{.reg .b32 k, w, v, u, z, a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3; .reg .f32 e0, e1, e2, e3; "
        f"mov.b32 k, {magic}; mov.b32 w, $4; mov.b32 v, $5; "
        + codes
        + _two_steps(kind, "a0, a1, a2, a3", "a4, a5, a6, a7", b=6, c=10)
    )


def _ones(one: str, kind: str) -> tl.constexpr:
    head = f"{{.reg .b32 o, b0, b1, b2, b3; .reg .f32 e0, e1, e2, e3; mov.b32 o, {one}; "
    return tl.constexpr(head + _two_steps(kind, "o, o, o, o", "o, o, o, o", b=4, c=8))


MMA4_BF16 = _mma4("0x43004300", "bf16")
MMA4_F16 = _mma4("0x64006400", "f16")
ONES_BF16 = _ones("0x3F803F80", "bf16")
ONES_F16 = _ones("0x3C003C00", "f16")
PAIRS = tl.constexpr(
    "prmt.b32 $0, $4, $6, 0x5410; prmt.b32 $1, $4, $6, 0x7632; prmt.b32 $2, $5, $7, 0x5410; "
    "prmt.b32 $3, $5, $7, 0x7632;"
)

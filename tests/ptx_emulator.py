"""A small emulator of the PTX instructions that the project's inline assembly uses (engine/kernels/ptx_codes.py,
engine/kernels/ptx_gemv.py), so that the CPU tests can run those strings: the interpreter cannot.

Registers hold raw bits (32- or 16-bit ints); float instructions view them as fp32 / fp16 / bf16.
16-bit float arithmetic is computed exactly in float64 and rounded once to fp16 / bf16, as the
hardware's .rn rounding does (exact for the values these strings see)."""

import numpy as np


def _number(text: str, regs: dict) -> int:
    return regs[text] if text in regs else int(text, 0)


def halves(word: int, bf16: bool = False) -> np.ndarray:
    """The two 16-bit floats of a 32-bit word (lo, hi) as float32."""
    bits = np.array([word & 0xFFFF, (word >> 16) & 0xFFFF], dtype=np.uint16)
    if bf16:  # a bf16 is the high half of an fp32
        return (bits.astype(np.uint32) << 16).view(np.float32)
    return bits.view(np.float16).astype(np.float32)


def word(values, bf16: bool = False) -> int:
    """Two floats (lo, hi) rounded to fp16 (or bf16: they must be exact) -> a 32-bit word."""
    values = np.asarray(values, dtype=np.float64)
    if bf16:
        bits = values.astype(np.float32).view(np.uint32)
        assert np.all(bits & 0xFFFF == 0), "not exact in bf16"
        lo, hi = (bits >> 16).astype(np.uint16)
    else:
        lo, hi = values.astype(np.float16).view(np.uint16)
    return int(lo) | (int(hi) << 16)


def f32(bits: int) -> float:
    return float(np.array([bits & 0xFFFFFFFF], dtype=np.uint32).view(np.float32)[0])


def bits32(value: float) -> int:
    return int(np.array([value], dtype=np.float32).view(np.uint32)[0])


def _lop3(a: int, b: int, c: int, lut: int) -> int:  # bit i: lut[(a_i << 2) | (b_i << 1) | c_i]
    return sum(
        ((lut >> (((a >> i) & 1) << 2 | ((b >> i) & 1) << 1 | (c >> i) & 1)) & 1) << i for i in range(32)
    )


def _prmt(a: int, b: int, sel: int) -> int:  # bytes of a are 0-3, of b 4-7; nibble i picks byte i
    pool = [(a >> 8 * i) & 0xFF for i in range(4)] + [(b >> 8 * i) & 0xFF for i in range(4)]
    assert all((sel >> 4 * i) & 8 == 0 for i in range(4)), "sign-replicate mode not emulated"
    return sum(pool[(sel >> 4 * i) & 7] << 8 * i for i in range(4))


def run_ptx(text: str, inputs: dict) -> dict:
    """Execute `text` with registers `inputs` ({"$2": word, ...}); returns all registers."""
    regs = dict(inputs)
    for line in text.strip("{}").split(";"):
        line = line.strip()
        if not line or line.startswith(".reg"):
            continue
        op, args = line.split(None, 1)
        if op == "mov.b32" and args.startswith("{"):  # unpack a word into two 16-bit registers
            lo, hi, src = (a.strip(" {}") for a in args.replace("}", ",").split(",") if a.strip(" {}"))
            regs[lo], regs[hi] = regs[src] & 0xFFFF, (regs[src] >> 16) & 0xFFFF
            continue
        dst, *src = [a.strip() for a in args.split(",")]
        vals = [_number(s, regs) for s in src]
        if op == "mov.b32":
            out = vals[0]
        elif op == "prmt.b32":
            out = _prmt(*vals)
        elif op == "lop3.b32":
            out = _lop3(*vals)
        elif op == "shr.b32":
            out = vals[0] >> vals[1]
        elif op == "shl.b32":
            out = vals[0] << vals[1]
        elif op == "and.b32":
            out = vals[0] & vals[1]
        elif op == "add.s32":
            out = vals[0] + vals[1]
        elif op == "sub.s32":
            out = vals[0] - vals[1]
        elif op == "abs.f32":
            out = vals[0] & 0x7FFFFFFF
        elif op == "max.f32":
            out = bits32(max(f32(vals[0]), f32(vals[1])))
        elif op == "mul.f32":
            out = bits32(np.float32(f32(vals[0])) * np.float32(f32(vals[1])))
        elif op == "add.f32":
            out = bits32(np.float32(f32(vals[0])) + np.float32(f32(vals[1])))
        elif op == "cvt.f32.f16":
            out = bits32(float(np.array([vals[0]], dtype=np.uint16).view(np.float16)[0]))
        elif op == "cvt.rn.f16x2.f32":  # d = {hi: cvt(a), lo: cvt(b)}
            out = word([f32(vals[1]), f32(vals[0])])
        elif op == "sub.f16x2":
            out = word(halves(vals[0]).astype(np.float64) - halves(vals[1]))
        elif op == "mul.rn.f16x2":
            out = word(halves(vals[0]).astype(np.float64) * halves(vals[1]))
        elif op in ("fma.rn.f16x2", "fma.rn.bf16x2"):
            bf16 = op.endswith("bf16x2")
            a, b, c = (halves(v, bf16).astype(np.float64) for v in vals)
            out = word(a * b + c, bf16)
        else:
            raise AssertionError(f"unexpected instruction {op}")
        regs[dst] = out & 0xFFFFFFFF
    return regs

"""The inline PTX that turns packed codes into 16-bit floats on the GPU (engine/ptx_codes.py), run by a
small emulator of the instructions it uses. The interpreter cannot run PTX, so this is the CPU check
of those strings; the GPU benchmarks (bench/kv.py, bench/weights.py) check the kernels that use them
against fp64 references on every run."""

import re

import numpy as np
import pytest

from membudget.engine import ptx_codes


def _number(text: str, regs: dict) -> int:
    return regs[text] if text in regs else int(text, 0)


def _halves(word: int, bf16: bool = False) -> np.ndarray:
    bits = np.array([word & 0xFFFF, word >> 16], dtype=np.uint16)
    if bf16:  # a bf16 is the high half of an fp32
        return (bits.astype(np.uint32) << 16).view(np.float32)
    return bits.view(np.float16)


def _word(halves: np.ndarray, bf16: bool = False) -> int:
    if bf16:  # every value here is exact in bf16: truncation is the rounding
        assert np.all(halves.astype(np.float32).view(np.uint32) & 0xFFFF == 0), "not exact in bf16"
        lo, hi = (halves.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    else:
        lo, hi = halves.astype(np.float16).view(np.uint16)
    return int(lo) | (int(hi) << 16)


def run_ptx(text: str, word: int) -> tuple[int, int]:
    """Execute `text` with $2 = word; returns ($0, $1)."""
    regs = {"$2": word}
    for line in text.strip("{}").split(";"):
        line = line.strip()
        if not line or line.startswith(".reg"):
            continue
        op, args = line.split(None, 1)
        dst, *src = [a.strip() for a in args.split(",")]
        vals = [_number(s, regs) for s in src]
        if op == "mov.b32":
            out = vals[0]
        elif op == "prmt.b32":  # bytes of a are 0-3, of b 4-7; selector nibble i picks result byte i
            a, b, sel = vals
            pool = [(a >> 8 * i) & 0xFF for i in range(4)] + [(b >> 8 * i) & 0xFF for i in range(4)]
            assert all((sel >> 4 * i) & 8 == 0 for i in range(4)), "sign-replicate mode not emulated"
            out = sum(pool[(sel >> 4 * i) & 7] << 8 * i for i in range(4))
        elif op == "lop3.b32":  # bit i of the result: lut[(a_i << 2) | (b_i << 1) | c_i]
            a, b, c, lut = vals
            out = sum(
                ((lut >> (((a >> i) & 1) << 2 | ((b >> i) & 1) << 1 | (c >> i) & 1)) & 1) << i
                for i in range(32)
            )
        elif op == "shr.b32":
            out = vals[0] >> vals[1]
        elif op == "sub.f16x2":
            out = _word(_halves(vals[0]) - _halves(vals[1]))
        elif op in ("fma.rn.f16x2", "fma.rn.bf16x2"):  # the product and sum are exact in float64 here
            bf16 = op.endswith("bf16x2")
            a, b, c = (_halves(v, bf16).astype(np.float64) for v in vals)
            out = _word(a * b + c, bf16)
        else:
            raise AssertionError(f"unexpected instruction {op}")
        regs[dst] = out & 0xFFFFFFFF
    return regs["$0"], regs["$1"]


@pytest.mark.parametrize(
    "text, expected, bf16",
    [
        (ptx_codes.F16_BYTES.value, lambda b: b, False),
        (ptx_codes.F16_LO.value, lambda b: b & 15, False),
        (ptx_codes.F16_HI.value, lambda b: b >> 4, False),
        (ptx_codes.BF16_LO.value, lambda b: b & 15, True),
        (ptx_codes.BF16_HI.value, lambda b: b >> 4, True),
    ],
    ids=["fp16 bytes", "fp16 low nibbles", "fp16 high nibbles", "bf16 low nibbles", "bf16 high nibbles"],
)
def test_codes_ptx(text, expected, bf16):
    """Element i of four packed bytes -> half i of ($0, $1), exactly the code, for every byte value."""
    assert re.search(r"\$0", text) and re.search(r"\$1", text)
    values = np.arange(256)
    rng = np.random.default_rng(0)
    for position in range(4):
        for b in values:
            others = rng.integers(0, 256, 4)
            others[position] = b
            word = int(sum(int(x) << 8 * i for i, x in enumerate(others)))
            out0, out1 = run_ptx(text, word)
            got = np.concatenate([_halves(out0, bf16), _halves(out1, bf16)])
            assert got[position] == expected(int(b)), (position, int(b), got)
            want = [expected(int(x)) for x in others]
            np.testing.assert_array_equal(got.astype(np.int64), want)

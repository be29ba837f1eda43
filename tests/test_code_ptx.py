"""The inline PTX that turns packed KV codes into fp16 on the GPU (engine/triton_quant_attention.py),
run by a small emulator of the five instructions it uses. The interpreter cannot run PTX, so this is
the CPU check of those strings; the GPU benchmark (bench/kv.py) checks the kernel that uses them
against an fp64 reference on every run."""

import re

import numpy as np
import pytest

from membudget.engine import triton_quant_attention as tqa


def _number(text: str, regs: dict) -> int:
    return regs[text] if text in regs else int(text, 0)


def _halves(word: int) -> np.ndarray:
    return np.array([word & 0xFFFF, word >> 16], dtype=np.uint16).view(np.float16)


def _word(halves: np.ndarray) -> int:
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
        elif op == "sub.f16x2":
            out = _word(_halves(vals[0]) - _halves(vals[1]))
        elif op == "fma.rn.f16x2":  # one rounding: the product and sum are exact in float64 here
            a, b, c = (_halves(v).astype(np.float64) for v in vals)
            out = _word((a * b + c).astype(np.float16))
        else:
            raise AssertionError(f"unexpected instruction {op}")
        regs[dst] = out & 0xFFFFFFFF
    return regs["$0"], regs["$1"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (tqa.ASM_8.value, lambda b: b),
        (tqa.ASM_LO.value, lambda b: b & 15),
        (tqa.ASM_HI.value, lambda b: b >> 4),
    ],
    ids=["bytes", "low nibbles", "high nibbles"],
)
def test_codes_ptx(text, expected):
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
            got = np.concatenate([_halves(out0), _halves(out1)])
            assert got[position] == expected(int(b)), (position, int(b), got)
            want = [expected(int(x)) for x in others]
            np.testing.assert_array_equal(got.astype(np.int64), want)

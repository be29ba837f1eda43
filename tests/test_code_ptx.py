"""The inline PTX that turns packed codes into 16-bit floats on the GPU (engine/kernels/ptx_codes.py), run by a
small emulator of the instructions it uses (tests/ptx_emulator.py). The interpreter cannot run PTX, so this is the CPU check
of those strings; the GPU benchmarks (bench/kv.py, bench/weights.py) check the kernels that use them
against fp64 references on every run."""

import re

import numpy as np
import pytest

from membudget.engine.kernels import ptx_codes

from .ptx_emulator import halves, run_ptx


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
            regs = run_ptx(text, {"$2": word})
            got = np.concatenate([halves(regs["$0"], bf16), halves(regs["$1"], bf16)])
            assert got[position] == expected(int(b)), (position, int(b), got)
            want = [expected(int(x)) for x in others]
            np.testing.assert_array_equal(got.astype(np.int64), want)

"""The inline PTX of the one-row weight-only kernel (engine/kernels/ptx_gemv.py), run by the emulator in
tests/ptx_emulator.py: the inputs side (scale by a power of two, pack in the codes side's pairs) and
the codes side (code - zero times the inputs, two per instruction) against a numpy model and the exact
product. The interpreter test (tests/kernels/check_gemv.py) runs the kernel with the same pairing in
plain Triton; bench/weights.py checks the PTX kernel on the GPU against fp64."""

import numpy as np
import pytest
import torch

from membudget.engine.kernels import ptx_gemv

from .ptx_emulator import f32, halves, run_ptx, word

# (inputs of the lo half, of the hi half) of X0..X3 and their extra scale, per bit width
PAIRS = {
    4: [(0, 4, 1), (1, 5, 1 / 16), (2, 6, 1), (3, 7, 1 / 16)],
    8: [(0, 1, 1), (2, 3, 1), (4, 5, 1), (6, 7, 1)],
}


def _chunk(rng, bf16: bool) -> np.ndarray:
    """8 inputs over many magnitudes, some zero, exact in the 16-bit type."""
    x = rng.standard_normal(8) * np.exp2(rng.integers(-20, 12, 8))
    x[rng.random(8) < 0.2] = 0
    dtype = torch.bfloat16 if bf16 else torch.float16
    return torch.tensor(x, dtype=torch.float32).to(dtype).float().numpy().astype(np.float64)


def _input_words(x: np.ndarray, bf16: bool) -> dict:
    return {f"${5 + i}": word(x[2 * i : 2 * i + 2], bf16) for i in range(4)}


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp16"])
def test_prep(bits, bf16):
    """Packed inputs: x * s rounded to fp16 in the documented pairs (1/16 more for high nibbles),
    s a power of two with max |x| * s < 1, inv = 1 / s."""
    text = (ptx_gemv.PREP4_BF16 if bits == 4 else ptx_gemv.PREP8_BF16) if bf16 else None
    text = text or (ptx_gemv.PREP4_F16 if bits == 4 else ptx_gemv.PREP8_F16)
    rng = np.random.default_rng(bits)
    for _ in range(200):
        x = _chunk(rng, bf16)
        regs = run_ptx(text.value, _input_words(x, bf16))
        inv = f32(regs["$4"])
        s = 1 / inv
        assert np.log2(inv) == round(np.log2(inv)), inv
        assert np.abs(x).max() * s < 1 and (np.abs(x).max() == 0 or np.abs(x).max() * s >= 0.5)
        for i, (lo, hi, extra) in enumerate(PAIRS[bits]):
            got = halves(regs[f"${i}"])
            want = np.array([x[lo] * s * extra, x[hi] * s * extra]).astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(got, want)
            if bf16:  # a power of two keeps every bit of a bf16 (fp16 subnormals aside)
                exact = np.abs(np.array([x[lo], x[hi]]) * s * extra) >= 2.0**-14
                np.testing.assert_array_equal(got[exact], (np.array([x[lo], x[hi]]) * s * extra)[exact])


@pytest.mark.parametrize("bits", [4, 8])
def test_dot(bits):
    """One chunk and row: sum_i (q_i - z) * x_i * inv, with fp16 products summed four per half, equals
    the numpy model bit for bit and the exact sum to fp16 precision (relative to the chunk's largest
    input for the smallest ones)."""
    text = (ptx_gemv.DOT4 if bits == 4 else ptx_gemv.DOT8).value
    prep = (ptx_gemv.PREP4_BF16 if bits == 4 else ptx_gemv.PREP8_BF16).value
    rng = np.random.default_rng(10 + bits)
    top = 2**bits - 1
    for _ in range(300):
        q = rng.integers(0, top + 1, 8)
        z = int(rng.integers(0, top + 1))
        x = _chunk(rng, True)
        xp = run_ptx(prep, _input_words(x, True))
        if bits == 4:  # input 2i in the low nibble of byte i
            b = q[0::2] | (q[1::2] << 4)
            codes = {"$1": int(sum(int(v) << 8 * i for i, v in enumerate(b)))}
            regs = {**codes, "$7": (0x6400 | z) * 0x10001, "$8": (0x6400 | 16 * z) * 0x10001, "$9": xp["$4"]}
        else:
            words = [int(sum(int(v) << 8 * i for i, v in enumerate(q[j : j + 4]))) for j in (0, 4)]
            regs = {"$1": words[0], "$2": words[1], "$7": (0x6400 | z) * 0x10001, "$9": xp["$4"]}
        regs |= {f"${3 + i}": xp[f"${i}"] for i in range(4)}
        got = f32(run_ptx(text, regs)["$0"])
        # the model: fp16 products, multiply-adds rounded to fp16 per half, then fp32
        acc = np.zeros(2, dtype=np.float16)
        for j, (lo, hi, extra) in enumerate(PAIRS[bits]):
            xs = halves(xp[f"${j}"]).astype(np.float64)
            t = np.array([q[lo] - z, q[hi] - z], dtype=np.float64) / extra
            acc = (t * xs + (acc.astype(np.float64) if j else 0)).astype(np.float16)
        model = np.float32(np.float32(acc[0]) + np.float32(acc[1])) * np.float32(f32(xp["$4"]))
        assert got == model, (got, model)
        # inputs below 2**-14 of the chunk's largest are fp16 subnormals there (absolute error 2**-25)
        exact = float(((q - z) * x).sum())
        bound = 2e-3 * np.abs((q - z) * x).sum() + 8 * top * np.abs(x).max() * 2.0**-24
        assert abs(got - exact) <= bound, (got, exact)

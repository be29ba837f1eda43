"""GPU kernels (split-KV decode attention over 16-bit and quantized caches, the quantized-cache write,
near-duplicate keys, weight-only and 16-bit one-row matrix products, in-place compaction, top-k
sampling), checked on the CPU by Triton's interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is installed by `make test` on Linux")


@pytest.mark.parametrize(
    "check",
    [
        "check_split_kv.py",
        "check_similarity.py",
        "check_wquant.py",
        "check_gemv.py",
        "check_gemv16.py",
        "check_gemv_tc.py",
        "check_kvwrite.py",
        "check_compact.py",
        "check_sample.py",
    ],
)
def test_kernel_matches_reference(check):
    script = Path(__file__).parent / "kernels" / check
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith(
        (
            "ok quantized",
            "ok twins",
            "ok qlinear",
            "ok gemv",
            "ok gemv16",
            "ok gemv_tc",
            "ok kvwrite",
            "ok compact",
            "ok sample",
        )
    )

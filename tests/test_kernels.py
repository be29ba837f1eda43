"""GPU kernels, checked on the CPU by Triton's interpreter against the torch reference."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is installed by `make test` on Linux")


def test_split_kv_decode_matches_reference():
    script = Path(__file__).parent / "kernels" / "check_split_kv.py"
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok worst=" in done.stdout

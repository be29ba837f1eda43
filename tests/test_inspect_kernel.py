"""bench/inspect_kernel.py compiles kernels for sm_90 with the ptxas Triton ships: it must keep up with
the kernels' signatures (it is how their registers and loop instructions are checked before device time)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is installed by `make test` on Linux")
ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    "args",
    [
        ["fast", "--bits", "4", "--block-n", "32", "--warps", "1", "--merge"],
        ["fast", "--bits", "8", "--block-n", "32", "--warps", "1", "--write"],
        ["dense", "--block-n", "64", "--warps", "4"],
        ["qlinear", "--bits", "4", "--block-n", "128", "--rows", "16"],
        ["gemv", "--bits", "8", "--block-n", "64", "--warps", "2"],
    ],
)
def test_inspect_kernel_compiles_for_sm90(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inspect_kernel.py"), *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REG:" in done.stdout and "loop:" in done.stdout, done.stdout


@pytest.mark.parametrize("kind", ["gemv", "gemv16"])
def test_one_row_kernels_fetch_weights_before_their_wait(kind):
    """With programmatic dependent launch the one-row weight kernels issue their first weight loads
    before griddepcontrol.wait (engine/launch.py); a compiler that sank them below the wait would
    silently lose that overlap."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inspect_kernel.py"), kind, "--warps", "2", "--stages", "1", "--pdl"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"(\d+) global loads before the wait", done.stdout)
    assert found and int(found.group(1)) > 0, done.stdout

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
        # head_dim 64 (SmolLM2, Llama-3.2-1B): one scale group per slot, another compiled path
        ["fast", "--bits", "8", "--block-n", "32", "--warps", "1", "--write", "--head-dim", "64"],
        [
            "fast",
            "--bits",
            "4",
            "--block-n",
            "32",
            "--warps",
            "1",
            "--write",
            "--grouped",
            "--head-dim",
            "64",
        ],
        ["dequant", "--bits", "2", "--block-n", "64", "--warps", "4", "--head-dim", "64"],
        ["dense", "--block-n", "64", "--warps", "4", "--head-dim", "64"],
        ["fast", "--bits", "8", "--block-n", "32", "--warps", "1", "--write"],
        ["dense", "--block-n", "64", "--warps", "4"],
        ["qlinear", "--bits", "4", "--block-n", "128", "--rows", "16"],
        ["gemv", "--bits", "8", "--block-n", "64", "--warps", "2"],
        ["gemv-tc", "--tiles", "2", "--at-once", "2", "--warps", "1"],
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


@pytest.mark.parametrize("kind", ["gemv", "gemv16", "gemv-tc"])
def test_one_row_kernels_fetch_weights_before_their_wait(kind):
    """With programmatic dependent launch the one-row weight kernels issue their first weight loads
    before griddepcontrol.wait (engine/kernels/launch.py); a compiler that sank them below the wait would
    silently lose that overlap."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inspect_kernel.py"), kind, "--warps", "1" if kind == "gemv-tc" else "2",
         "--stages", "1", "--pdl"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"(\d+) global loads before the wait", done.stdout)
    assert found and int(found.group(1)) > 0, done.stdout


def lane_of_dim0(layout: str) -> bool:
    """Whether a TTGIR layout puts dimension 0 on the warp's 32 lanes in order and nothing on other
    warps: lane l holds index l (the layout engine/kernels/gemv_tc.py's inline MMAs assume)."""
    if "ttg.blocked" in layout:
        threads = re.search(r"threadsPerWarp = \[([^\]]*)\]", layout).group(1).split(", ")
        warps = re.search(r"warpsPerCTA = \[([^\]]*)\]", layout).group(1).split(", ")
        return threads[0] == "32" and all(w == "1" for w in warps)
    lanes = re.search(r"lane = \[(.*?)\], warp = \[(.*?)\]", layout)
    bases = re.findall(r"\[(\d+)((?:, 0)*)\]", lanes.group(1))
    return [int(b[0]) for b in bases] == [1, 2, 4, 8, 16] and lanes.group(2) == ""


def test_tensor_core_row_kernel_keeps_lanes_in_order():
    """Every inline MMA of the 4-bit one-row kernel gets operands whose dimension 0 is the lane index
    (checked in Triton's GPU IR for sm_90): a Triton that laid them out otherwise would make the MMAs
    multiply the wrong lanes' data, which only a GPU run would show."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inspect_kernel.py"), "gemv-tc", "--warps", "1", "--ttgir"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    layouts = dict(re.findall(r"^(#\w+) = (#ttg\.\w+<.*>)$", done.stdout, re.M))
    mma_lines = [line for line in done.stdout.splitlines() if "mma.sync" in line]
    assert len(mma_lines) >= 2, "no inline MMA found"
    for line in mma_lines:
        used = set(re.findall(r"tensor<[^>]*, (#\w+)>", line))
        assert used, line[-300:]
        for name in used:
            assert lane_of_dim0(layouts[name]), f"{name} = {layouts[name]}"

"""A/B of how our kernels are launched and compiled, in one run, alternating, each variant compiled
afresh: programmatic dependent launch for our kernels (engine/kernels/launch.py) on or off, one-row 16-bit
matrix products by our GEMV (engine/kernels/gemv16.py) or by Inductor's / cuBLAS's kernels, the 16-bit
attention's launch, a register cap for the 8-bit packed kernel, autotuning at one row (`set_variant`).

Run on the device:  PYTHONPATH=src python3 bench/ab_launch.py [--out DIR] [--cases M:B:BITS,...]
    [--variants 'pdl+gemv16;pdl;off;pdl+gemv16=32:128:4:2:1024;pdl+dense=32:2:512'] [--reps 2]
Checks first: gemv16 against F.linear on Qwen3 matrices, and greedy tokens of graph replays equal
eager steps at one row with PDL on. Writes ab-launch.json after every timed step.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from decode import check_graph  # bench/decode.py

from membudget.bench import bench_engine, copy_bandwidth, save_result
from membudget.engine import compiling
from membudget.engine.kernels import attention, gemv, gemv16, launch
from membudget.spec import resolve_spec

SUPPORTS = gemv16.supports
GEMV16_LAUNCH = gemv16.GEMV16_LAUNCH
DENSE_LAUNCH = attention.DENSE_LAUNCH
DENSE_LAUNCH_ONE_ROW = attention.DENSE_LAUNCH_ONE_ROW


def set_variant(name: str) -> None:
    """'+'-joined parts: 'off' (neither), 'pdl', 'gemv16' or 'gemv16=block_n:block_k:warps:stages:programs',
    'dense=block_n:warps:programs' (the 16-bit attention's launch at any batch size), 'upto=MiB' (gemv16 for weights up to
    that size only), 'cap8=N' (the 8-bit packed one-row kernel with at most N registers per thread),
    'autotune1' (one row's layer compiled with autotuning, as before session 9)."""
    parts = dict((p.split("=") + [""])[:2] for p in name.split("+"))
    if not set(parts) <= {"off", "pdl", "gemv16", "dense", "upto", "cap8", "autotune1"}:
        sys.exit(f"unknown variant {name!r}")
    launch.PDL = "pdl" in parts
    gemv.GEMV_LAUNCH[8]["maxnreg"] = int(parts.get("cap8") or 0)
    compiling.AUTOTUNE_ROWS = range(1, 5) if "autotune1" in parts else range(2, 5)
    gemv16.supports = SUPPORTS if "gemv16" in parts else (lambda x, w: False)
    keys = ("block_n", "block_k", "num_warps", "num_stages", "target_programs")
    given = dict(zip(keys, map(int, parts["gemv16"].split(":")), strict=True)) if parts.get("gemv16") else {}
    gemv16.GEMV16_LAUNCH = GEMV16_LAUNCH | given
    gemv16.MAX_WEIGHT_BYTES = int(parts["upto"]) << 20 if parts.get("upto") else None
    given = tuple(map(int, parts["dense"].split(":"))) if parts.get("dense") else None
    attention.DENSE_LAUNCH = given or DENSE_LAUNCH
    attention.DENSE_LAUNCH_ONE_ROW = given or DENSE_LAUNCH_ONE_ROW
    torch._dynamo.reset()


def check_gemv16() -> float:
    """Worst relative error of gemv16 vs F.linear (fp32 reference) on Qwen3-0.6B and -8B matrices."""
    worst = 0.0
    for n, k in [(4096, 1024), (1024, 2048), (6144, 1024), (24576, 4096), (4096, 12288), (151936, 1024)]:
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        ref = F.linear(x.float(), w.float())
        err = ((gemv16.gemv16(x, w).float() - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--name", default="ab-launch")
    parser.add_argument("--cases", default="Qwen/Qwen3-0.6B:1:16,Qwen/Qwen3-8B:1:16")
    parser.add_argument("--variants", default="pdl+gemv16;off;pdl")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-checks", action="store_true")
    args = parser.parse_args()
    start = time.time()
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    if not args.no_checks:
        set_variant("pdl+gemv16")
        result["gemv16_rel_err"] = check_gemv16()
        result["graph_equals_eager_one_row"] = check_graph(1)
        print(json.dumps(result), flush=True)
    bandwidth = copy_bandwidth(torch.device("cuda"))
    result["copy_bandwidth_gbps"] = bandwidth / 1e9
    for case in args.cases.split(","):
        name, batch, bits = case.split(":")
        spec = resolve_spec(name)
        for rep in range(args.reps):
            for variant in args.variants.split(";"):
                set_variant(variant)
                row = bench_engine(spec, int(batch), 8192, bandwidth, weights=int(bits))
                result["rows"].append(
                    row.to_dict() | {"variant": variant, "rep": rep, "at_s": time.time() - start}
                )
                save_result(args.out, args.name, result)
                r = result["rows"][-1]
                print(
                    f"{name.split('/')[-1]} b{batch} w{bits} {variant:<30} {r['ms_per_step']:.3f} ms "
                    f"({r['pct_of_bound']:.1f} %) peak/acct {r['peak_vs_accounted']:.3f} at {r['at_s']:.0f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Step times of two source trees of membudget measured in one run: did a change keep the speed?

Run on the device, from the tree to check (the "after"), with the other one unpacked beside it:

    git archive COMMIT | (mkdir -p ../before && tar -x -C ../before)
    PYTHONPATH=src python3 bench/compare_trees.py --before ../before [--out DIR] [--rounds 2]

Each case is MODEL:ROWS:WEIGHTS:KV (KV `full` or `quant:Q`), timed by each tree's own
`bench_engine` (membudget/timing.py) at 8,192 tokens of context: the median of 5 windows of 50 CUDA-graph
replays of the whole decode step on random weights. The trees take turns, one fresh process per tree
and round (before, after, before, after, ...), each timing every case, so that clock drift and
compile caches fall on both alike. Per case it reports each tree's fastest round and after / before;
compare_trees.json holds every round. Exits 1 if a case is slower after by more than --tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = (
    "Qwen/Qwen3-0.6B:1:16:full,Qwen/Qwen3-0.6B:16:16:full,Qwen/Qwen3-8B:1:16:full,Qwen/Qwen3-8B:16:16:full,"
    "Qwen/Qwen3-8B:1:8:full,Qwen/Qwen3-8B:1:4:full,Qwen/Qwen3-8B:16:16:quant:4"
)

# Runs in a fresh process whose PYTHONPATH is one tree's src/: times the cases given as JSON in argv[1]
# and prints one JSON line per case.
CHILD = """
import json, sys, torch
try:
    from membudget.timing import bench_engine
except ImportError:  # trees from before the module's rename
    from membudget.bench import bench_engine
from membudget.spec import resolve_spec
for model, rows, bits, kv in json.loads(sys.argv[1]):
    torch.manual_seed(0)
    r = bench_engine(resolve_spec(model), rows, 8192, 1e12, weights=bits, kv=kv)
    print(json.dumps({"case": f"{model}:{rows}:{bits}:{kv}", "ms": r.ms_per_step}), flush=True)
"""


def parse_case(text: str) -> tuple[str, int, int, str]:
    model, rows, bits, kv = text.split(":", 3)
    return model, int(rows), int(bits), kv


def time_tree(src: Path, cases: list[tuple], log) -> dict[str, float]:
    """ms per step of each case with the package under `src` (one process)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)], env=env, capture_output=True, text=True, check=False
    )
    log.write(done.stderr)
    if done.returncode:
        sys.exit(f"the tree {src} failed:\n{done.stderr[-3000:]}")
    return {r["case"]: r["ms"] for r in map(json.loads, done.stdout.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the other tree (a checkout or unpacked archive)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--cases", default=CASES, help="MODEL:ROWS:WEIGHTS:KV,...")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args()
    trees = {
        "before": Path(args.before).resolve() / "src",
        "after": Path(__file__).resolve().parent.parent / "src",
    }
    for src in trees.values():
        if not (src / "membudget").is_dir():
            sys.exit(f"--before: no src/membudget under {src.parent}; unpack the other tree there")
    cases = [parse_case(c) for c in args.cases.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rounds: dict[str, list[dict]] = {"before": [], "after": []}
    with (out / "compare_trees.log").open("w") as log:
        for i in range(args.rounds):
            for name, src in trees.items():
                rounds[name].append(time_tree(src, cases, log))
                print(f"round {i + 1}, {name}: {json.dumps(rounds[name][-1])}", flush=True)
                (out / "compare_trees.json").write_text(
                    json.dumps({"cases": args.cases, "rounds": rounds}, indent=1)
                )
    import torch  # (only for the device's name: the trees ran in their own processes)

    rows, slower = [], []
    print(f"\n{'case':<32}{'before ms':>11}{'after ms':>10}{'after/before':>14}")
    for model, rows_, bits, kv in cases:
        key = f"{model}:{rows_}:{bits}:{kv}"
        best = {name: min(r[key] for r in runs) for name, runs in rounds.items()}
        ratio = best["after"] / best["before"]
        rows.append({"case": key, **best, "ratio": ratio})
        slower += [key] if ratio > 1 + args.tolerance else []
        print(f"{key.removeprefix('Qwen/'):<32}{best['before']:>11.3f}{best['after']:>10.3f}{ratio:>14.3f}")
    summary = {
        "device": torch.cuda.get_device_name(),
        "cases": rows,
        "rounds": rounds,
        "tolerance": args.tolerance,
    }
    (out / "compare_trees.json").write_text(json.dumps(summary, indent=1))
    print(f"slower by more than {args.tolerance:.0%}: {slower or 'none'}")
    sys.exit(1 if slower else 0)


if __name__ == "__main__":
    main()

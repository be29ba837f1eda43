"""A sweep's generations against their roofline, auto batching against one problem at a time, and the
rehearsal's estimate against both. For GPU sweeps; `random:NAME` models need no download.

    PYTHONPATH=src python3 bench/sweep_roofline.py examples/random-scale.toml --out $OUT [--one 3]

1. The sweep as its file says (normally batch = "auto") into OUT/auto.db, then with batch = 1 on the
   first --one problems into OUT/one.db (the real CLI, each in its own process, before this process
   touches the GPU: a sweep sizes its generations from the memory left free). Both resume.
2. `membudget sweep --rehearse`'s estimate of each group (sweep/estimate.py), on this device.
3. Per generation (the store's `generations` table): decode seconds, rows, and the bytes its steps
   must move (every weight once and each row's held KV per step, at the mean held context;
   steps: the largest budget plus one answer phase per budget), so the bandwidth it reached and its
   share of the copy bandwidth measured here (timing.copy_bandwidth). Then auto's tokens per second
   over batch = 1's, beside the factor that the bytes per token predict (each run's bytes over its
   tokens).
Writes sweep_roofline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gpu_acceptance import variant

from membudget.cli.sweep import gpu_memory_bytes
from membudget.memory import KVPolicy
from membudget.spec import resolve_spec
from membudget.sweep import estimate
from membudget.sweep.config import load_sweep
from membudget.sweep.runner import group_plans, plan, resolve_device, size_generations


def sweep(file: Path, db: Path, log: Path) -> None:
    with log.open("a") as f:
        cli = [sys.executable, "-m", "membudget", "sweep", str(file), "--db", str(db)]
        if subprocess.run(cli, stdout=f, stderr=subprocess.STDOUT, check=False).returncode:
            sys.exit(f"the sweep of {file} failed: see {log}")


def generations(db: Path, plans: dict, bandwidth: float) -> list[dict]:
    """Each generation of the store with the bytes its steps moved and the share of `bandwidth`."""
    rows = []
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    for g in con.execute("SELECT model, weights, kv, task, rows, prompt_tokens, decode_s FROM generations"):
        p = plans[g["model"], g["weights"], g["kv"], g["task"]]
        held = estimate.mean_held(KVPolicy.parse(g["kv"]), g["prompt_tokens"], p.budget)
        w, kv = estimate.moved_bytes(resolve_spec(g["model"]), g["weights"], g["kv"], g["rows"], held)
        moved = p.steps * (w + kv)
        rows.append(dict(g) | {"steps": p.steps, "bytes": moved, "share_of_copy": moved / g["decode_s"] / bandwidth,
                               "tokens_per_s": g["rows"] * p.steps / g["decode_s"],
                               "bytes_per_row": (w + kv) / g["rows"]})  # fmt: skip
    con.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--one", type=int, default=3, help="problems of the batch = 1 run")
    args = parser.parse_args()
    import torch

    from membudget.timing import copy_bandwidth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "sweeps.log"
    sweep(args.file, out / "auto.db", log)
    one = variant(args.file, out / "one.toml", batch="1", limit=str(args.one))
    sweep(one, out / "one.db", log)
    config, problems = load_sweep(args.file)
    device, dtype = resolve_device(config)
    groups = plan(config, problems, sizes=size_generations(config, problems, gpu_memory_bytes(config, None)))
    plans = {(p.model, p.weights, p.kv, p.task): p for p in group_plans(config, problems, groups)}
    rehearsed = {}
    for key, p in plans.items():
        r = estimate.rehearse(resolve_spec(p.model), p, device, dtype)
        rehearsed[key] = {"estimate_s": r.estimate_seconds, "ms_per_step": r.seconds_per_step * 1e3,
                          "peak": r.peak_bytes, "accounted": r.accounted_bytes}  # fmt: skip
        print(
            f"rehearsed {key}: {r.estimate_seconds:.1f} s ({r.seconds_per_step * 1e3:.2f} ms/step)",
            flush=True,
        )
    torch.cuda.empty_cache()
    bandwidth = copy_bandwidth(torch.device(device))
    auto, single = (
        generations(out / "auto.db", plans, bandwidth),
        generations(out / "one.db", plans, bandwidth),
    )
    summary = {"device": torch.cuda.get_device_name(device), "copy_bandwidth_gbps": bandwidth / 1e9,
               "rehearsed": {"/".join(map(str, k)): v for k, v in rehearsed.items()}, "auto": auto, "one": single}  # fmt: skip
    decode = sum(g["decode_s"] for g in auto)
    estimate_s = sum(r["estimate_s"] for r in rehearsed.values())
    per_s = {name: sum(g["rows"] * g["steps"] for g in gens) / sum(g["decode_s"] for g in gens)
             for name, gens in (("auto", auto), ("one", single))}  # fmt: skip
    per_token = {name: sum(g["bytes"] for g in gens) / sum(g["rows"] * g["steps"] for g in gens)
                 for name, gens in (("auto", auto), ("one", single))}  # fmt: skip
    predicted = per_token["one"] / per_token["auto"]
    summary |= {"decode_s": decode, "rehearsed_s": estimate_s, "speedup": per_s["auto"] / per_s["one"],
                "speedup_predicted_by_bytes": predicted}  # fmt: skip
    (out / "sweep_roofline.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{summary['device']}, copy bandwidth {bandwidth / 1e9:,.0f} GB/s")
    print(f"{'generation':<12}{'rows':>6}{'decode s':>10}{'GB/step':>9}{'% of copy':>10}{'tok/s':>9}")
    for name, gens in (("auto", auto), ("batch 1", single)):
        for g in gens:
            print(f"{name:<12}{g['rows']:>6}{g['decode_s']:>10.1f}{g['bytes'] / g['steps'] / 1e9:>9.2f}"
                  f"{100 * g['share_of_copy']:>9.1f}%{g['tokens_per_s']:>9,.0f}")  # fmt: skip
    print(f"auto: {decode:.1f} s of decode steps; --rehearse estimated {estimate_s:.1f} s "
          f"({estimate_s / decode:.2f}x)")  # fmt: skip
    print(
        f"auto over batch 1: {summary['speedup']:.2f}x tokens/s; the bytes per token predict {predicted:.2f}x"
    )


if __name__ == "__main__":
    main()

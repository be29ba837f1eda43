"""Where does a graph-replayed decode step's time go? A kernel trace of CUDA-graph replays (the
profiler records the kernels a graph launches), each kernel charged with how far it pushed the
step's end: kernels overlap under programmatic dependent launch, so their durations do not add up to
the step, but these increments do (with the idle time between kernels).

Run on the device:  PYTHONPATH=src python3 bench/trace_step.py [--cases M:B:BITS,...] [--steps 20]
Writes trace-step.json (per case: ms per step, idle µs per step, and per kernel name: calls, mean
duration and µs of the step it accounts for) and prints the top kernels.
"""

import argparse
import json
import os
import tempfile
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from membudget.engine.model import Decoder
from membudget.engine.sampling import SamplingParams, row_seeds
from membudget.engine.step import DecodeStep
from membudget.spec import resolve_spec
from membudget.timing import fill_random, save_result


def kernels(step: DecodeStep, ids, positions, steps: int) -> list[tuple[str, float, float]]:
    """(name, start µs, end µs) of every kernel of `steps` graph replays, in start order."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step.run(ids, positions)
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    found = [(e["name"], e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "kernel"]
    return sorted(found, key=lambda k: k[1])


def attribute(found: list[tuple[str, float, float]], steps: int) -> dict:
    """Charge each kernel with max(0, its end - the latest end before it); gaps with no kernel
    running are idle."""
    per_name = defaultdict(lambda: {"calls": 0, "busy_us": 0.0, "charged_us": 0.0})
    latest, idle = found[0][1], 0.0
    for name, start, end in found:
        idle += max(0.0, start - latest)
        row = per_name[name]
        row["calls"] += 1
        row["busy_us"] += end - start
        row["charged_us"] += max(0.0, end - max(latest, start))
        latest = max(latest, end)
    span = latest - found[0][1]
    table = [
        {
            "kernel": name[:120],
            "calls_per_step": row["calls"] / steps,
            "mean_us": row["busy_us"] / row["calls"],
            "charged_us_per_step": row["charged_us"] / steps,
        }
        for name, row in per_name.items()
    ]
    table.sort(key=lambda r: -r["charged_us_per_step"])
    return {"ms_per_step": span / steps / 1e3, "idle_us_per_step": idle / steps, "kernels": table}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--name", default="trace-step")
    parser.add_argument("--cases", default="Qwen/Qwen3-0.6B:1:16,Qwen/Qwen3-8B:1:4")
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": []}
    for case in args.cases.split(","):
        name, batch, bits = case.split(":")
        spec, batch = resolve_spec(name), int(batch)
        model = Decoder.random(spec, torch.bfloat16, torch.device("cuda"))
        model.quantize_(int(bits))
        cache = model.new_cache(batch, args.context + 64)
        fill_random(cache)
        step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, batch))
        ids, positions = torch.randint(0, spec.vocab_size, (batch,)), torch.full((batch,), args.context - 1)
        for _ in range(3):
            step.run(ids, positions)
        found = attribute(kernels(step, ids, positions, args.steps), args.steps)
        result["cases"].append({"model": name, "batch": batch, "weights": int(bits)} | found)
        save_result(args.out, args.name, result)
        print(f"\n{name} b{batch} w{bits}: {found['ms_per_step']:.3f} ms per step (traced), "
              f"idle {found['idle_us_per_step']:.1f} us")  # fmt: skip
        print(f"{'charged us':>11} {'calls':>6} {'mean us':>8}  kernel")
        for row in found["kernels"][:18]:
            print(f"{row['charged_us_per_step']:>11.1f} {row['calls_per_step']:>6.1f} {row['mean_us']:>8.2f}  "
                  f"{row['kernel'][:90]}")  # fmt: skip
        del step, cache, model


if __name__ == "__main__":
    main()

"""How well the time estimates predict the generation loop, on random weights of real shapes (no download).

    PYTHONPATH=src python3 bench/rehearse_check.py --out $OUT [--model Qwen/Qwen3-8B] [--kv rkv:4096,full]
                                                  [--rows 16] [--tokens 8192 | --tokens fit]

Per KV policy, one real generation (engine/generate.py: budget checkpoints at T/2 and T, answer
phases, compactions; random weights of the model's shape and a word tokenizer) timed over its decode
steps, beside what `membudget sweep --rehearse` extrapolates for the same generation (sweep/estimate.py:
a few hundred steps from the middle of its context) and what the step model says for one H200. Each
with its peak memory against the accounting, and (on a GPU) the loop's time per step against the
graph-replayed step at the same rows and mean held context (timing.bench_engine; an evicting cache's
step is that of a cache of its held length, without compactions). Writes rehearse_check.json after
every measurement (generation, graph step, rehearsal), so a run cut short keeps what it measured.

At study scale (Qwen3-8B, 16 rows, T = 30,000) one policy's generation takes minutes: run one `--kv`
per device call (or in a background job that outlives the call). `--tokens fit` takes the largest T (in thousands, within the model's positions) whose
generation of the first --kv policy fits the GPU's free memory by the accounting and the sweep's
margin (sweep/batching.py): the full cache at the largest T that fits.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from membudget.engine.generate import GenerationConfig, Generator
from membudget.engine.load import DTYPES, WordTokenizer
from membudget.engine.model import Decoder
from membudget.memory import KVPolicy
from membudget.spec import resolve_spec
from membudget.sweep import estimate
from membudget.sweep.batching import Batch, answer_slots, generation_bytes, largest_budget

ANSWER_TOKENS = 8  # of each checkpoint's answer


def fitting_tokens(spec, args, prompt: int) -> int:
    """The largest T (whole thousands) whose generation fits the free GPU memory, within the model's
    positions, with the answer slots of ANSWER_TOKENS."""
    answer = answer_slots(ANSWER_TOKENS)
    up_to = (spec.context or 131072) - prompt - 2 * answer
    free = torch.cuda.mem_get_info()[0]
    kv = args.kv.split(",")[0]
    tokens = largest_budget(spec, args.weights, kv, args.rows, prompt, answer, free, up_to) // 1000 * 1000
    if tokens < 2:
        raise SystemExit(
            f"{args.rows} rows of {spec.name} {args.weights}-bit {kv} do not fit the free GPU memory"
        )
    print(
        f"--tokens fit: T = {tokens:,} for {args.rows} rows of {kv} in {free / 2**30:.1f} GiB free",
        flush=True,
    )
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--model", default="Qwen/Qwen3-8B")
    parser.add_argument("--kv", default="rkv:4096,full")
    parser.add_argument("--weights", type=int, default=16)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--tokens", default="8192", help="T, or fit: the largest that fits the GPU")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cuda; cpu only checks that the script runs")
    args = parser.parse_args()
    spec = resolve_spec(args.model)
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    prompt = list(range(1, args.prompt + 1))
    tokens = fitting_tokens(spec, args, len(prompt)) if args.tokens == "fit" else int(args.tokens)
    budgets = (tokens // 2, tokens)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []

    def save() -> None:
        summary = {"device": device, "model": args.model, "weights": args.weights, "results": results}
        (out / "rehearse_check.json").write_text(json.dumps(summary, indent=1))

    for kv in args.kv.split(","):
        config = GenerationConfig(budgets=budgets, samples=args.rows, answer_tokens=ANSWER_TOKENS, kv=kv)
        model = Decoder.random(spec, DTYPES[dtype], args.device)
        model.quantize_(args.weights)
        gen = Generator(model, WordTokenizer(spec.vocab_size))
        gen.generate(prompt, config)
        measured, steps, peak = gen.timings.decode_s, gen.timings.steps, gen.peak_memory_bytes
        answer = gen.answer_slots(config)
        del gen, model
        accounted = generation_bytes(spec, args.weights, kv, budgets[-1], args.rows, len(prompt), answer)
        row = {"kv": kv, "rows": args.rows, "tokens": tokens, "measured_s": measured, "measured_steps": steps,
               "loop_ms_per_step": 1e3 * measured / steps, "peak": peak, "accounted": accounted,
               "peak_vs_accounted": peak / accounted if peak else None}  # fmt: skip
        results.append(row)
        save()
        print(json.dumps(row), flush=True)
        if args.device == "cuda":  # the graph-replayed step at the mean held context
            from membudget.timing import bench_engine, copy_bandwidth

            policy = KVPolicy.parse(kv)
            held = round(estimate.mean_held(policy, len(prompt), budgets[-1]))
            same = f"quant:{policy.bits}" if policy.bits else "full"
            bandwidth = copy_bandwidth(torch.device("cuda"))
            graph = bench_engine(spec, args.rows, held, bandwidth, weights=args.weights, kv=same)
            row |= {"graph_ms_per_step": graph.ms_per_step, "graph_bound_ms": graph.hbm_bound_ms,
                    "loop_vs_graph": row["loop_ms_per_step"] / graph.ms_per_step}  # fmt: skip
            save()
        group = estimate.group_plan(args.model, args.weights, kv, "check", 1, Batch(1, args.rows, 1, 0), args.rows,
                                    len(prompt), budgets, answer)  # fmt: skip
        rehearsal = estimate.rehearse(spec, group, args.device, dtype)
        row |= {
            "planned_steps": group.steps,
            "rehearsed_s": rehearsal.estimate_seconds,
            "rehearsed_ms_per_step": rehearsal.seconds_per_step * 1e3,
            "rehearsed_vs_measured": rehearsal.estimate_seconds / measured,
            "step_model_s_h200": estimate.estimate_seconds(spec, group),
            "rehearsal_peak": rehearsal.peak_bytes,
        }
        save()
        print(json.dumps(row), flush=True)
    print(f"\n{device}, {args.model}, {args.weights}-bit, {args.rows} rows, T = {tokens:,}")
    print(f"{'KV':<12}{'measured s':>11}{'rehearsed s':>12}{'ratio':>7}{'model s (H200)':>15}{'peak/acct':>10}"
          f"{'loop ms':>9}{'graph ms':>9}{'loop/graph':>11}")  # fmt: skip
    for r in results:
        ratio = f"{r['peak_vs_accounted']:.3f}" if r["peak_vs_accounted"] else "-"
        graph = (
            f"{r['graph_ms_per_step']:>9.2f}{r['loop_vs_graph']:>11.3f}" if "graph_ms_per_step" in r else ""
        )
        print(f"{r['kv']:<12}{r['measured_s']:>11.1f}{r['rehearsed_s']:>12.1f}{r['rehearsed_vs_measured']:>7.2f}"
              f"{r['step_model_s_h200']:>15.1f}{ratio:>10}{r['loop_ms_per_step']:>9.2f}{graph}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Where a generation's peak memory comes from, phase by phase, on a CUDA GPU.

    PYTHONPATH=src python3 bench/peak_phases.py --model smollm2 --kv full,quant:4 --rows 128 --json out.json

For each KV policy, one generation of `--rows` rows (one prompt, G = rows) through the real loop; torch's
peak is read and reset at the end of each phase: `cache` (allocating it), `capture` (compiling and
capturing the decode step), `prefill`, `decode` (every step, compaction and answer phase). Each phase's
peak is reported as bytes above what was allocated before the generation (the weights and whatever
the process keeps), beside `membudget memory`'s KV and workspace for the same generation.
"""

from __future__ import annotations

import argparse
import json

import torch

from membudget.engine.generate import GenerationConfig, Generator
from membudget.engine.load import load_model
from membudget.memory import Scenario, breakdown

MiB = 2**20
RESET = torch.cuda.reset_peak_memory_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--weights", type=int, default=16)
    parser.add_argument("--kv", default="full,quant:4,rkv:48")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("peak_phases.py needs a CUDA GPU")
    loaded = load_model(args.model, device="cuda", weights=args.weights)
    gen = Generator(loaded.decoder, loaded.tokenizer)
    prompt = loaded.tokenizer.encode("What is 17 + 25? Think step by step.", add_special_tokens=False)
    phases: list[tuple[str, int]] = []
    base = [0]

    def mark(name: str) -> None:
        torch.cuda.synchronize()
        phases.append((name, torch.cuda.max_memory_allocated() - base[0]))
        RESET()

    new_cache, prefill = gen.model.new_cache, gen.model.prefill

    def cache_then_mark(*a, **k):
        out = new_cache(*a, **k)
        mark("cache")
        return out

    def prefill_then_mark(*a, **k):
        if phases[-1][0] != "capture":
            mark("capture")
        out = prefill(*a, **k)
        mark("prefill")
        return out

    gen.model.new_cache, gen.model.prefill = cache_then_mark, prefill_then_mark
    results = []
    for kv in args.kv.split(","):
        config = GenerationConfig(budgets=(64, args.tokens), samples=args.rows, answer_tokens=6, kv=kv)
        gen.cache = None
        torch.cuda.synchronize()
        base[0] = torch.cuda.memory_allocated()
        phases.clear()
        phases.append(("start", 0))
        RESET()
        torch.cuda.reset_peak_memory_stats = lambda *a: None  # the phases reset it themselves
        try:
            gen.generate(prompt, config)
        finally:
            torch.cuda.reset_peak_memory_stats = RESET
        mark("decode")
        capacity = gen.capacity(len(prompt), config)
        b = breakdown(loaded.spec, Scenario(args.model, args.weights, kv, capacity - len(prompt), args.rows,
                                            len(prompt), answer_slots=gen.answer_slots(config)))  # fmt: skip
        row = {"kv": kv, "held_before_MiB": base[0] / MiB, "weights_MiB": b.weights_bytes / MiB,
               "kv_MiB": b.kv_bytes / MiB, "workspace_MiB": b.workspace_bytes / MiB,
               "cache_nbytes_MiB": gen.cache.nbytes / MiB,
               "phases_MiB": {name: round(v / MiB, 1) for name, v in phases[1:]}}  # fmt: skip
        results.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "model": args.model, "rows": args.rows,
                       "results": results}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()

"""Every KV policy through the real generation loop on a GPU, on a small random Qwen3 of head_dim 64
(and 128): budget checkpoints, compactions, answer phases and CUDA-graph steps, in one process. For
each policy: that it completes, its decode time, and its measured peak against `membudget memory`'s
accounting of the same generation. No download: the model is random, built from a config.

    PYTHONPATH=src python3 bench/gpu_kv_smoke.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from membudget.engine.generate import GenerationConfig, Generator
from membudget.engine.load import WordTokenizer
from membudget.engine.model import Decoder
from membudget.memory import Scenario, breakdown
from membudget.spec import ModelSpec

POLICIES = [
    "full",
    "quant:8",
    "quant:4",
    "quant:2",
    "streaming:64",
    "rkv:64",
    "h2o:64",
    "snapkv:64",
    "rkv:64+quant:4",
]


def spec(head_dim: int) -> ModelSpec:
    return ModelSpec.from_config(
        {"model_type": "qwen3", "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4,
         "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": head_dim, "vocab_size": 2048,
         "tie_word_embeddings": True, "max_position_embeddings": 4096},
        name=f"random-qwen3-d{head_dim}",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--head-dims", default="64,128")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only checks that the script runs")
    args = parser.parse_args()
    rows = []
    for head_dim in map(int, args.head_dims.split(",")):
        s = spec(head_dim)
        model = Decoder.random(s, torch.bfloat16, args.device)
        gen = Generator(model, WordTokenizer(s.vocab_size))
        prompt = list(range(1, 41))
        for kv in POLICIES:
            config = GenerationConfig((96, 256), 8, 8, " w1 w2", True, "w3", kv=kv)
            t0 = time.perf_counter()
            try:
                gen.generate(prompt, config)
                ok, error = True, ""
            except Exception as err:  # a policy that fails is a finding, reported with the rest
                ok, error = False, f"{type(err).__name__}: {err}"[:200]
            seconds = time.perf_counter() - t0
            capacity = gen.capacity(len(prompt), config)
            scenario = Scenario(s.name, 16, kv, capacity - len(prompt), 8, len(prompt),
                                answer_slots=gen.answer_slots(config))  # fmt: skip
            accounted = breakdown(s, scenario).total_bytes
            peak = gen.peak_memory_bytes
            row = {"head_dim": head_dim, "kv": kv, "completed": ok, "error": error, "seconds": seconds,
                   "peak": peak, "accounted": accounted, "ratio": peak / accounted if ok and peak else None}  # fmt: skip
            rows.append(row)
            ratio = f"{row['ratio']:.3f}" if row["ratio"] else "-"
            print(
                f"d={head_dim:3d} {kv:16s} {'ok' if ok else 'FAILED'} {seconds:6.1f} s  peak/accounted {ratio} {error}"
            )
        del model, gen
    if args.json:
        device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        with open(args.json, "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

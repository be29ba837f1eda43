"""Decode-step benchmark on one GPU: the engine vs the HBM bound and vs transformers' generate().

Run on the device:  PYTHONPATH=src python3 bench/decode.py [--out DIR] [--quick]
Checks correctness on the GPU first (split-KV kernel vs an fp64 reference; graph replay vs eager at 1
and 4 rows, greedy and sampled; the sampling kernels vs the torch path on the CPU; the memory one
more step leaves behind), then times Qwen3-0.6B and Qwen3-8B shapes at batch 1 and 16, 8k context,
bf16, random weights. Prints a table and writes decode.json.
"""

import argparse
import itertools
import json
import os
import sys

import torch

from membudget.engine.attention import decode_attention_reference
from membudget.engine.kernels.attention import split_kv_decode
from membudget.engine.model import Decoder
from membudget.engine.sampling import SamplingParams, row_seeds, sample
from membudget.engine.step import DecodeStep
from membudget.spec import resolve_spec
from membudget.timing import bench_engine, bench_transformers, copy_bandwidth, save_result


def check_kernel() -> float:
    worst = 0.0
    for rows, heads, kv_heads, d, capacity in [
        (1, 16, 8, 128, 8256),
        (16, 32, 8, 128, 4160),
        (3, 9, 3, 64, 999),
    ]:
        q = torch.randn(rows, heads, 1, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(rows, kv_heads, capacity, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(rows, kv_heads, capacity, d, device="cuda", dtype=torch.bfloat16)
        lengths = torch.randint(1, capacity + 1, (rows,), device="cuda")
        ref = decode_attention_reference(q.double(), k.double(), v.double(), lengths, d**-0.5)
        out = split_kv_decode(q, k, v, lengths, d**-0.5)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        assert torch.isfinite(out).all() and err < 1e-2, f"split-KV kernel error {err}"
        tickets = torch.zeros(rows * kv_heads, dtype=torch.int32, device="cuda")
        for _ in range(3):  # merged by the last split program (its own reduction order): tickets left zero
            merged = split_kv_decode(q, k, v, lengths, d**-0.5, tickets=tickets)
            merged_err = ((merged.double() - ref).norm() / ref.norm()).item()
            assert merged_err < 1e-2 and not tickets.any(), f"in-kernel merge: error {merged_err}, {tickets}"
            worst = max(worst, merged_err)
        worst = max(worst, err)
    return worst


def check_sample(rows: int = 64) -> int:
    """Rows (of `rows`) whose token drawn by the sampling kernels (engine/kernels/sample.py) on the GPU
    equals the torch path's on the CPU, Qwen3's vocabulary and sampling defaults, random logits."""
    logits = torch.randn(rows, 151936, device="cuda") * 3
    seeds, positions = torch.tensor(row_seeds(7, rows), device="cuda"), torch.arange(rows, device="cuda")
    gpu = sample(logits, SamplingParams(), seeds, positions).cpu()
    cpu = sample(logits.cpu(), SamplingParams(), seeds.cpu(), positions.cpu())
    return int((gpu == cpu).sum())


def check_graph(rows: int, params: SamplingParams | None = None) -> bool:
    """Tokens (greedy unless `params` say otherwise) from graph replays equal eager steps on a small
    random model (one row: the one-row matrix kernel, engine/kernels/gemv16.py)."""
    spec = resolve_spec("Qwen/Qwen3-0.6B")
    model = Decoder.random(spec, torch.bfloat16, "cuda")
    tokens = {}
    for use_graph in (True, False):
        cache = model.new_cache(rows, 256)
        for t in cache.store.k + cache.store.v:
            t.zero_()
        params = params or SamplingParams(greedy=True)
        step = DecodeStep(model, cache, params, row_seeds(0, rows), use_graph=use_graph)
        model.prefill(torch.arange(100, 132, device="cuda"), cache)
        ids, out = torch.arange(5, 5 + rows), []
        for p in range(32, 96):
            ids = step.run(ids, torch.full((rows,), p)).cpu()
            out.append(ids.tolist())
        tokens[use_graph] = out
    return tokens[True] == tokens[False]


def step_growth_bytes(steps: int = 4) -> int:
    """Allocated bytes that one more DecodeStep leaves behind once released, of the same model and of
    a new model each time (a sweep's model groups), the largest over `steps` of each: 0 expected (one
    capture stream per GPU: `Decoder.capture_stream`)."""
    spec = resolve_spec("Qwen/Qwen3-0.6B")
    same = Decoder.random(spec, torch.bfloat16, "cuda")
    worst = 0
    for new_models in (False, True):
        after = []
        for _ in range(steps):
            model = Decoder.random(spec, torch.bfloat16, "cuda") if new_models else same
            cache = model.new_cache(2, 256)
            step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, 2))
            step.run(torch.tensor([5, 6]), torch.full((2,), 10))
            del step, cache, model
            torch.cuda.synchronize()
            after.append(torch.cuda.memory_allocated())
        worst = max(worst, *(b - a for a, b in itertools.pairwise(after)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--cases", default="Qwen/Qwen3-0.6B:1,Qwen/Qwen3-0.6B:16,Qwen/Qwen3-8B:1,Qwen/Qwen3-8B:16"
    )
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    parser.add_argument("--name", default="decode", help="JSON file name (without .json)")
    parser.add_argument("--weights", default="16", help="weight bits to time, e.g. 16,8,4")
    parser.add_argument(
        "--merge-variants",
        action="store_true",
        help="time each case with the attention's splits merged in its kernel and by the merge kernel",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    result["kernel_rel_err"] = check_kernel()
    result["graph_equals_eager"] = check_graph(1) and check_graph(4) and check_graph(4, SamplingParams())
    result["sample_rows_equal_torch_of_64"] = check_sample()
    result["step_growth_bytes"] = step_growth_bytes()
    print(
        f"kernel rel err {result['kernel_rel_err']:.2e}; graph == eager: {result['graph_equals_eager']}; "
        f"sampling kernels == torch on {result['sample_rows_equal_torch_of_64']}/64 rows; "
        f"allocated bytes left by one more step: {result['step_growth_bytes']}",
        flush=True,
    )
    bandwidth = copy_bandwidth(torch.device("cuda"))
    result["copy_bandwidth_gbps"] = bandwidth / 1e9
    rows = []
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    result["compile"] = os.environ.get("MEMBUDGET_COMPILE", "1")
    for (name, batch), bits in itertools.product(
        cases[:1] if args.quick else cases, map(int, args.weights.split(","))
    ):
        spec = resolve_spec(name)
        for merge in (True, False) if args.merge_variants else (None,):
            row = bench_engine(spec, batch, 8192, bandwidth, weights=bits, in_kernel_merge=merge)
            rows.append(
                row.to_dict() | {"merge": {None: "default", True: "in-kernel", False: "kernel"}[merge]}
            )
        if batch == 1 and bits == 16 and not args.no_hf:
            rows[-1]["hf_ms_per_step"] = hf = bench_transformers(spec, batch, 8192)
            rows[-1]["speedup_vs_hf"] = hf / rows[-1]["ms_per_step"]
        result["rows"] = rows
        save_result(args.out, args.name, result)  # after every case: a run cut short keeps its figures
        print(json.dumps(rows[-1]), flush=True)
    print(f"\ncopy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write)")
    print(
        f"{'model':<16}{'merge':>10}{'G':>4}{'ms/step':>10}{'bound ms':>10}{'% bound':>9}{'loop ms':>9}{'HF ms':>8}"
        f"{'x HF':>7}{'peak/acct':>11}"
    )
    for r in rows:
        hf = f"{r['hf_ms_per_step']:.1f}" if r["hf_ms_per_step"] else "-"
        x = f"{r['speedup_vs_hf']:.1f}" if r["speedup_vs_hf"] else "-"
        print(
            f"{r['model'].split('/')[-1]:<16}{r['merge']:>10}{r['batch']:>4}{r['ms_per_step']:>10.3f}{r['hbm_bound_ms']:>10.3f}"
            f"{r['pct_of_bound']:>8.1f}%{r['loop_ms_per_step']:>9.3f}{hf:>8}{x:>7}{r['peak_vs_accounted']:>11.3f}"
        )
    sys.exit(0 if result["graph_equals_eager"] else 1)


if __name__ == "__main__":
    main()

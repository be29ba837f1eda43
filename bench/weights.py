"""Weight-only int8 / int4 on one GPU: the fused kernel's correctness, its speed per matrix, and the
whole decode step against bf16 (Qwen3-8B shape, batch 1, 8k context: the weight-precision issue's targets).

Run on the device:  PYTHONPATH=src python3 bench/weights.py [--out DIR] [--tune] [--batches 1,16]
Writes weights.json and prints a table. `--tune` also times kernel configurations per matrix shape.
"""

import argparse
import copy
import itertools
import json
import os

import torch
import torch.nn.functional as F

from membudget.engine.kernels.gemv import gemv
from membudget.engine.kernels.gemv_tc import gemv_tc
from membudget.engine.kernels.qlinear import qlinear
from membudget.engine.wquant import dequantize, quantize
from membudget.spec import resolve_spec
from membudget.timing import bench_engine, copy_bandwidth, save_result

TARGETS = {8: 0.65, 4: 0.45}  # step time vs bf16, Qwen3-8B batch 1


def check_kernel() -> float:
    """Worst relative error of the fused kernels vs an fp64 dequantize-and-multiply, bf16 and fp16
    inputs: one row (4 bits: the tensor-core kernel where it applies, the packed CUDA-core kernel, the
    fp32 one), several rows (tensor cores)."""
    worst = 0.0
    cases = itertools.product((8, 4), (1, 3, 16, 200), (1024,), (576, 4096), (torch.bfloat16, torch.float16))
    for bits, rows, n, k, dtype in cases:
        w = quantize(torch.randn(n, k, device="cuda") * 0.05, bits)
        # inputs over many magnitudes (outliers as real activations have), some exactly zero
        x = torch.randn(rows, k, device="cuda") * torch.exp2(torch.randint(-8, 8, (rows, k), device="cuda"))
        x = x.to(dtype)
        x[:, ::5] = 0
        ref = x.double() @ dequantize(w, torch.float64).T
        for packed in (None, True, False) if rows == 1 else (None,):  # one row: default, packed, fp32
            err = float((qlinear(x, w, packed=packed).double() - ref).norm() / ref.norm())
            assert err < 1e-2, f"qlinear error {err} (bits {bits}, rows {rows}, K {k}, {dtype}, {packed})"
            worst = max(worst, err)
    return worst


def check_model() -> dict:
    """Qwen3-0.6B shape, random weights, bf16: logits of quantized decode steps (compiled, with the
    kernels above) vs the same quantized matrices dequantized to bf16 (cuBLAS), relative error over 32
    teacher-forced steps of 4 rows; and greedy tokens of graph replays == eager steps."""
    from membudget.engine.layer import LINEARS
    from membudget.engine.model import Decoder
    from membudget.engine.sampling import SamplingParams, row_seeds
    from membudget.engine.step import DecodeStep

    spec = resolve_spec("Qwen/Qwen3-0.6B")
    found = {}
    for bits in (8, 4):
        model = Decoder.random(spec, torch.bfloat16, "cuda")
        plain = copy.copy(model)  # same embedding, norms and head; its own layers below
        quantized = [
            layer._replace(**{n: quantize(getattr(layer, n), bits) for n in LINEARS})
            for layer in model.layers
        ]
        plain.layers = plain.compute_layers = [
            q._replace(**{n: dequantize(getattr(q, n), torch.bfloat16) for n in LINEARS}) for q in quantized
        ]
        model.layers = model.compute_layers = quantized
        kinds = sorted({type(getattr(layer, n)).__name__ for layer in model.layers for n in LINEARS})
        ids = torch.randint(0, spec.vocab_size, (4, 32), device="cuda")
        caches = [m.new_cache(4, 64) for m in (model, plain)]
        errs = []
        for t in range(32):
            pos = torch.full((4,), t, device="cuda")
            a, b = (m.decode(ids[:, t], pos, c) for m, c in zip((model, plain), caches, strict=True))
            errs.append(float((a - b).norm() / b.norm()))
        tokens = {}
        for use_graph in (True, False):
            step = DecodeStep(
                model, model.new_cache(4, 128), SamplingParams(greedy=True), row_seeds(0, 4), use_graph
            )
            nxt, out = torch.tensor([5, 6, 7, 8]), []
            for p in range(64):
                nxt = step.run(nxt, torch.full((4,), p)).cpu()
                out.append(nxt.tolist())
            tokens[use_graph] = out
        found[bits] = {
            "matrices": kinds,
            "logits_rel_err_max": max(errs),
            "graph_equals_eager": tokens[True] == tokens[False],
        }
        print(f"{bits}-bit: {found[bits]}", flush=True)
        del model, plain, quantized
    return found


def graph_ms(fn, *args, calls: int = 20, replays: int = 20, **kwargs) -> float:
    """Milliseconds per call of fn(*args, **kwargs), from CUDA-graph replays of `calls` calls (no launch
    overhead)."""
    fn(*args, **kwargs)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn(*args, **kwargs)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / (replays * calls))
    return sorted(times)[2]


def kernel_ms(fn, *args, name: str = "_gemv_kernel", calls: int = 30, **kwargs) -> float:
    """Milliseconds per call of the kernels called `name` that fn(*args, **kwargs) launches, from the
    profiler's device times (the kernel alone: without the eager split-K adds that a compiled step
    folds into other kernels)."""
    from torch.profiler import ProfilerActivity, profile

    fn(*args, **kwargs)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn(*args, **kwargs)
        torch.cuda.synchronize()
    times = [e.device_time_total for e in prof.key_averages() if e.key == name]
    return sum(times) / calls / 1e3


def cycled_copies(w, w16: torch.Tensor):
    """w and distinct quantized copies of w16's shape, cycled: together twice the L2 cache, so that
    each call streams its weight from HBM as in a step (one matrix called again and again is read
    from L2 when it fits: 50 MB on an H200)."""
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    copies = [w] + [quantize(torch.randn_like(w16) * 0.02, w.bits) for _ in range(2 * l2 // w.nbytes)]
    return itertools.cycle(copies)


def matrices(
    spec, bandwidth: float, tune: bool, tune_gemv: bool = False, tune_tc: bool = False
) -> list[dict]:
    h, inter = spec.hidden_size, spec.intermediate_size
    qkv = (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim
    shapes = {
        "qkv": (qkv, h),
        "o": (h, spec.num_heads * spec.head_dim),
        "gate_up": (2 * inter, h),
        "down": (h, inter),
    }
    rows = []
    for (name, (n, k)), bits in itertools.product(shapes.items(), (16, 8, 4)):
        w16 = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        if bits == 16:
            ms, nbytes = graph_ms(F.linear, x, w16), w16.numel() * 2
            configs = {"cublas": ms}
        else:
            w = quantize(w16, bits)
            nbytes = w.nbytes
            configs = {
                "default": graph_ms(qlinear, x, w),
                "packed": graph_ms(qlinear, x, w, packed=True),
                "fp32-kernel": graph_ms(qlinear, x, w, packed=False),
            }
            if tune_tc and bits == 4:  # the tensor-core one-row kernel alone vs the packed one, cycled copies
                ring = cycled_copies(w, w16)
                configs["gemv-packed"] = kernel_ms(lambda x=x, ring=ring: gemv(x, next(ring)))
                grid = itertools.product((1, 2, 4), (1, 2, 4), (2048, 4096, 8192, 16384))
                for tiles, at_once, programs in grid:
                    key = f"tc-t{tiles}-u{at_once}-p{programs}"
                    configs[key] = kernel_ms(
                        lambda x=x, ring=ring, t=tiles, u=at_once, n=programs: gemv_tc(
                            x, next(ring), tiles=t, at_once=u, target_programs=n
                        ),
                        name="_gemv_tc_kernel",
                    )
                best_tc = min((c for c in configs if c.startswith("tc-")), key=configs.get)
                print(
                    f"  {name} kernel alone: packed {configs['gemv-packed'] * 1e3:.1f} us, tensor cores best "
                    f"{best_tc} {configs[best_tc] * 1e3:.1f} us ({nbytes / configs[best_tc] / 1e6:.0f} GB/s)",
                    flush=True,
                )
                del ring
            if tune_gemv:  # the packed one-row kernel's launch: warps, stages, programs
                ring = cycled_copies(w, w16)

                def cycled(x=x, ring=ring, **launch):
                    return gemv(x, next(ring), **launch)

                grid = itertools.product((1, 2, 4), (1, 2), (1320, 1584, 2048, 2640))
                for wa, st, programs in grid:
                    key = f"gemv-w{wa}-st{st}-p{programs}"
                    configs[key] = kernel_ms(cycled, num_warps=wa, num_stages=st, target_programs=programs)
                configs["gemv-default"] = kernel_ms(cycled)
                del ring
            if tune:
                grid = [(bn, sp, wa, 3) for bn in (64, 128, 256) for sp in (4, 8, 16, 32) for wa in (4, 8)]
                for bn, splits, warps, stages in grid:
                    key = f"bn{bn}-s{splits}-w{warps}-st{stages}"
                    configs[key] = graph_ms(
                        qlinear,
                        x,
                        w,
                        block_n=bn,
                        splits=splits,
                        num_warps=warps,
                        num_stages=stages,
                    )
                x16 = torch.randn(16, k, device="cuda", dtype=torch.bfloat16)
                configs["rows16-default"] = graph_ms(qlinear, x16, w)
        # (the gemv- entries time the kernel alone, so they are ranked among themselves)
        best = min((c for c in configs if not c.startswith(("rows16", "gemv-", "tc-"))), key=configs.get)
        row = {
            "matrix": name,
            "n": n,
            "k": k,
            "bits": bits,
            "bytes": nbytes,
            "ms": configs.get("default", configs[best]),
            "best": best,
            "best_ms": configs[best],
            "pct_of_copy_bw": 100 * nbytes / bandwidth * 1e3 / configs[best],
        }
        if tune_gemv and bits != 16:
            row["best_gemv"] = min((c for c in configs if c.startswith("gemv-")), key=configs.get)
            print(
                f"  gemv kernel alone: default {configs['gemv-default'] * 1e3:.1f} us, best {row['best_gemv']} "
                f"{configs[row['best_gemv']] * 1e3:.1f} us",
                flush=True,
            )
        if tune or tune_gemv or tune_tc:
            row["configs"] = configs
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "configs"}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--name", default="weights")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--tune-gemv", action="store_true", help="launches of the packed one-row kernel")
    parser.add_argument(
        "--tune-tc", action="store_true", help="launches of the 4-bit tensor-core one-row kernel"
    )
    parser.add_argument("--checks-only", action="store_true", help="correctness checks, no timing")
    parser.add_argument("--no-model-check", action="store_true", help="skip the Qwen3-0.6B step checks")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--bits", default="16,8,4", help="weight widths of the steps (16 first: the base)")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = resolve_spec("Qwen/Qwen3-8B")
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "compile": os.environ.get("MEMBUDGET_COMPILE", "1"),
    }
    result["kernel_rel_err"] = check_kernel()
    print(f"kernel rel err {result['kernel_rel_err']:.2e}", flush=True)
    result["model_checks"] = {} if args.no_model_check else check_model()
    if args.checks_only:
        save_result(args.out, args.name, result)
        return
    bandwidth = copy_bandwidth(torch.device("cuda"))
    result["copy_bandwidth_gbps"] = bandwidth / 1e9
    result["matrices"] = matrices(spec, bandwidth, args.tune, args.tune_gemv, args.tune_tc)
    save_result(args.out, args.name, result)
    steps = []
    for batch in map(int, filter(None, args.batches.split(","))):  # "" : no steps
        base = None
        for bits in map(int, args.bits.split(",")):
            row = bench_engine(spec, batch, 8192, bandwidth, weights=bits).to_dict()
            base = base or row["ms_per_step"]
            row["vs_bf16"] = row["ms_per_step"] / base
            steps.append(row)
            result["steps"] = steps
            save_result(args.out, args.name, result)
            print(json.dumps(row), flush=True)
    torch._dynamo.reset()
    result["steps"] = steps
    save_result(args.out, args.name, result)
    print(f"\ncopy bandwidth {bandwidth / 1e9:.0f} GB/s")
    print(
        f"{'G':>3}{'bits':>5}{'ms/step':>9}{'bound ms':>9}{'% bound':>8}{'x bf16':>8}{'target':>8}{'peak GiB':>9}{'acct GiB':>9}"
    )
    for r in steps:
        target = f"<={TARGETS[r['weights']]}" if r["weights"] in TARGETS and r["batch"] == 1 else "-"
        print(
            f"{r['batch']:>3}{r['weights']:>5}{r['ms_per_step']:>9.3f}{r['hbm_bound_ms']:>9.3f}{r['pct_of_bound']:>7.1f}%"
            f"{r['vs_bf16']:>8.3f}{target:>8}{r['peak_bytes'] / 2**30:>9.2f}{r['accounted_bytes'] / 2**30:>9.2f}"
        )


if __name__ == "__main__":
    main()

"""KV-policy benchmarks on one GPU (Qwen3-8B shape, bf16, batch 16, random weights).

Run on the device:  PYTHONPATH=src python3 bench/kv.py [--out DIR] [--model Qwen/Qwen3-8B] [--batch 16]
  1. Correctness on the GPU: quantized split-KV kernels vs the chunked reference; with `graphs`,
     greedy tokens of graph replays vs eager steps for five policies.
  kernels: the attention kernels alone at 16k and 32k slots (16-bit, dequantizing, scale-after-dot
     at its default launch and a few others).
  2. rkv:4096 vs a full cache of the same physical length: the same host loop (where -> graph replay
     -> advance) for 512 steps; R-KV compacts every 128 (its cost is included); the full cache is
     rewound every 128 steps so both attend over 4096..4224 slots.
  3. quant:8 vs full at 16k slots and quant:4 vs full at 32k: graph replays at a fixed length.
  Cache bytes are measured (torch.cuda.memory_allocated around the allocation) against the accounted.
Writes kv.json and prints each figure with the bound it is compared with.
"""

import argparse
import gc
import os
import time

import torch

from membudget.engine.kernels.quant_attention import QuantLaunch, split_kv_decode_quant
from membudget.engine.kvquant import RESIDUAL, group_slots, quant_decode_attention_reference, quantize
from membudget.engine.model import Decoder
from membudget.engine.sampling import SamplingParams, row_seeds
from membudget.engine.step import DecodeStep
from membudget.memory import KVPolicy, kv_bytes
from membudget.spec import resolve_spec
from membudget.timing import fill_random, save_result, time_replays


def check_quant_kernel() -> float:
    worst = 0.0
    for bits in (8, 4, 2):
        rows, heads, kv_heads, d, capacity = 4, 32, 8, 128, 3000
        k = torch.randn(rows, kv_heads, capacity, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(rows, kv_heads, capacity, d, device="cuda", dtype=torch.bfloat16)
        parts = [*quantize(k, bits), *quantize(v, bits)]
        rings = [k[:, :, :RESIDUAL].clone(), v[:, :, :RESIDUAL].clone()]
        store = (*parts, *rings, bits)
        q = torch.randn(rows, heads, 1, d, device="cuda", dtype=torch.bfloat16)
        lengths = torch.tensor([3000, 1, 129, 2047], device="cuda")
        ref = quant_decode_attention_reference(q.double(), store, lengths, d**-0.5)
        out = split_kv_decode_quant(q, store, lengths, d**-0.5)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        assert torch.isfinite(out).all() and err < 1e-2, f"quantized kernel error {err}"
        if bits == 4:  # value codes grouped by 4 slots, as the 4-bit CUDA store keeps them: the same
            grouped = split_kv_decode_quant(q, grouped_store(store), lengths, d**-0.5)
            assert torch.equal(grouped, out), "grouped value codes give another result"
        tickets = torch.zeros(rows * kv_heads, dtype=torch.int32, device="cuda")
        for _ in range(3):  # merged by the last split program (its own reduction order): tickets left zero
            merged = split_kv_decode_quant(q, store, lengths, d**-0.5, tickets=tickets)
            merged_err = ((merged.double() - ref).norm() / ref.norm()).item()
            assert merged_err < 1e-2 and not tickets.any(), f"in-kernel merge: error {merged_err}, {tickets}"
            worst = max(worst, merged_err)
        worst = max(worst, err)
    return worst


def grouped_store(store: tuple) -> tuple:
    """A quantized store tuple with its value codes grouped by 4 slots (engine/kvquant.py)."""
    return (*store[:3], group_slots(store[3]), *store[4:])


def check_compact() -> bool:
    """In-place compaction on the GPU == torch's gather (bf16 keys of 16 rows, codes, scales)."""
    from membudget.engine.kernels.compact import compact_

    same = True
    for width, dtype in ((128, torch.bfloat16), (64, torch.uint8), (2, torch.float16)):
        buf = (torch.rand(16, 8, 4224, width, device="cuda") * 200).to(dtype)
        rows = torch.arange(16, device="cuda")
        index = torch.rand(16, 8, 4224, device="cuda").argsort(-1)[..., :4096].sort(-1).values
        want = buf.clone()
        want[:, :, :4096] = want.gather(2, index[..., None].expand(-1, -1, -1, width))
        compact_(buf, rows, index)
        same &= torch.equal(buf, want)
    return same


def check_graph(kv: str) -> bool:
    """Greedy tokens of 300 steps (two compactions for eviction) from graph replays equal eager steps."""
    spec = resolve_spec("Qwen/Qwen3-0.6B")
    model = Decoder.random(spec, torch.bfloat16, "cuda")
    tokens = {}
    for use_graph in (True, False):
        cache = model.new_cache(4, 400, kv)
        step = DecodeStep(model, cache, SamplingParams(greedy=True), row_seeds(0, 4), use_graph=use_graph)
        model.prefill(torch.arange(100, 132, device="cuda"), cache)
        ids, out, rows = torch.tensor([5, 6, 7, 8]), [], [0, 1, 2, 3]
        for p in range(32, 332):
            slots, qslots = cache.where([True] * 4)
            ids = step.run(ids, torch.full((4,), p), torch.tensor(slots), torch.tensor(qslots)).cpu()
            cache.advance(rows, rows)
            out.append(ids.tolist())
        tokens[use_graph] = out
    return tokens[True] == tokens[False]


def parse_launch(text: str) -> QuantLaunch:
    """'block_n:warps:programs:write[:stages[:maxnreg]]' -> a launch of the scale-after-dot kernel
    (maxnreg 0: no cap)."""
    n, w, programs, write, stages, maxnreg = (list(map(int, text.split(":"))) + [3, 0])[:6]
    return QuantLaunch(n, w, programs, bool(write), stages, maxnreg or None)


def kernel_configs(g: int, heads: int, kv_heads: int, d: int, launches4: list) -> dict:
    """Attention kernels alone (no model) at 16k and 32k slots: the 16-bit kernel, the dequantizing
    quantized kernel, and the scale-after-dot kernel at its default launch and a few others
    (block_n, num_warps, splits)."""
    from membudget.engine.kernels.attention import split_kv_decode

    others = {8: [(16, 1, 64), (64, 2, 16), (32, 2, None)], 4: [(32, 1, 32), (64, 2, 16), (64, 4, 32)]}
    out = {}
    for length in (16384, 32768):
        q = torch.randn(g, heads, 1, d, device="cuda", dtype=torch.bfloat16)
        lengths = torch.full((g,), length, device="cuda")
        k = torch.randn(g, kv_heads, length, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        tickets = torch.zeros(g * kv_heads, dtype=torch.int32, device="cuda")
        out[f"dense{length}"] = time_replays(
            lambda q=q, k=k, v=v, n=lengths: split_kv_decode(q, k, v, n, d**-0.5)
        )
        out[f"dense{length}_merged"] = time_replays(
            lambda q=q, k=k, v=v, n=lengths, t=tickets: split_kv_decode(q, k, v, n, d**-0.5, tickets=t)
        )
        for bits in (8, 4):
            store = (
                *quantize(k, bits),
                *quantize(v, bits),
                k[:, :, :RESIDUAL].clone(),
                v[:, :, :RESIDUAL].clone(),
                bits,
            )
            fast_store = grouped_store(store) if bits == 4 else store  # as the engine's store has it
            runs = {"dequant": dict(fast=False), "fast": dict(fast=True)}
            runs["fast_merged"] = dict(fast=True, tickets=tickets)
            for n, w, sp in others[bits]:
                runs[f"fast_n{n}_w{w}_s{sp}"] = dict(fast=True, block_n=n, num_warps=w, splits=sp)
            for name, kw in runs.items():
                s = fast_store if kw["fast"] else store
                out[f"quant{bits}_{length}_{name}"] = time_replays(
                    lambda q=q, s=s, n=lengths, kw=kw: split_kv_decode_quant(q, s, n, d**-0.5, **kw)
                )
            if bits == 4:  # the slot-major value codes this kernel read before
                out[f"quant4_{length}_fast_slot_major"] = time_replays(
                    lambda q=q, s=store, n=lengths: split_kv_decode_quant(q, s, n, d**-0.5, fast=True)
                )
            for launch in launches4 if bits == 4 else ():  # other launches of the fast kernel
                given = parse_launch(launch)
                out[f"quant4_{length}_launch_{launch}"] = time_replays(
                    lambda q=q, s=fast_store, n=lengths, given=given: split_kv_decode_quant(
                        q, s, n, d**-0.5, fast=True, launch=given
                    )
                )
            del store, fast_store
        del k, v
        print({key: round(val, 3) for key, val in out.items() if str(length) in key})
    return out


def profile_compaction(model, g: int) -> list:
    """The CUDA kernels of one R-KV compaction of every row, by total time."""
    cache, _ = fresh_cache(model, g, 20_000, "rkv:4096")
    cache.fill = [4096 + 127] * g
    cache.seen = [4096 + 127] * g
    rows = list(range(g))
    cache.advance(rows, rows)  # warm-up compaction
    cache.fill = [4096 + 127] * g
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        cache.advance(rows, rows)
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) * 1e3
    from membudget.engine.kernels.similarity import TwinsLaunch, last_twins

    unit = torch.nn.functional.normalize(torch.randn(g * 8, 4224, 128, device="cuda"), dim=-1).bfloat16()
    for launch in (
        TwinsLaunch(128, 32, 4),
        TwinsLaunch(128, 64, 8),
        TwinsLaunch(128, 128, 8),
        TwinsLaunch(64, 64, 4),
    ):
        ms = time_replays(lambda launch=launch: last_twins(unit, 0.5, launch), reps=5, windows=3)
        print(f"  twin kernel {launch}: {ms:.3f} ms per layer")
    events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:12]
    top = [(e.key[:60], round(e.device_time_total / 1e3, 2), e.count) for e in events]
    print(f"one compaction: {wall:.1f} ms wall (profiled)")
    for row in top:
        print("  ", row)
    return [wall, top]


def fresh_cache(model, batch, tokens, kv):
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    cache = model.new_cache(batch, tokens, kv)
    measured = torch.cuda.memory_allocated() - before
    fill_random(cache)
    return cache, measured


def loop(model, cache, batch, start, steps, rewind=None) -> float:
    """ms per step of the generator's host loop: where -> replay -> advance (compactions included)."""
    step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, batch))
    rows = list(range(batch))
    ids = torch.randint(0, model.spec.vocab_size, (batch,))

    def run(n):
        cache.fill = [start] * batch
        cache.seen = [start] * batch
        position = start
        for i in range(n):
            if rewind and i and i % rewind == 0:
                cache.fill = [start] * batch
            slots, qslots = cache.where([True] * batch)
            step.run(ids, torch.full((batch,), position), torch.tensor(slots), torch.tensor(qslots))
            cache.advance(rows, rows)
            position += 1
        torch.cuda.synchronize()

    run(130)  # warm-up, one compaction included
    t0 = time.perf_counter()
    run(steps)
    return (time.perf_counter() - t0) / steps * 1e3


def fixed(model, cache, batch, length) -> float:
    """ms per graph replay with every row attending over `length` slots."""
    step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, batch))
    ids = torch.randint(0, model.spec.vocab_size, (batch,))
    where = torch.full((batch,), length - 1)
    return time_replays(lambda: step.run(ids, where, where, where), reps=20, windows=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--model", default="Qwen/Qwen3-8B")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--parts", default="graphs,rkv,quant8,quant4")
    parser.add_argument(
        "--launch4",
        default="",
        help="also time the quant:4 kernel alone with these launches: "
        "'block_n:warps:programs:write[:stages[:maxnreg]];...' (maxnreg 0: no cap)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = resolve_spec(args.model)
    g = args.batch
    result = {"device": torch.cuda.get_device_name(), "model": spec.name, "batch": g}
    result["quant_kernel_rel_err"] = check_quant_kernel()
    print(f"quantized split-KV kernel vs reference: worst rel err {result['quant_kernel_rel_err']:.2e}")
    parts = args.parts.split(",")
    result["compact_equals_gather"] = check_compact()
    print(f"in-place compaction == gather: {result['compact_equals_gather']}")
    for kv in (
        ("rkv:64", "h2o:64+quant:8", "quant:4", "snapkv:64", "streaming:64") if "graphs" in parts else ()
    ):
        result[f"graph_equals_eager[{kv}]"] = same = check_graph(kv)
        print(f"graph replay == eager, {kv}: {same}")
    model = Decoder.random(spec, torch.bfloat16, "cuda")

    def record(name, kv, tokens, cache_bytes, ms):
        accounted = kv_bytes(spec, KVPolicy.parse(kv), tokens, g)
        result[name] = {"kv": kv, "ms": ms, "cache_bytes": cache_bytes, "accounted_bytes": accounted}
        save_result(args.out, "kv", result)  # after every figure: a run cut short keeps what it measured
        print(
            f"{name:>16}: {ms:7.3f} ms/step  cache {cache_bytes / 2**30:6.2f} GiB (accounted {accounted / 2**30:.2f})"
        )

    if "kernels" in parts:
        launches4 = args.launch4.split(";") if args.launch4 else []
        result["kernels"] = kernel_configs(g, spec.num_heads, spec.num_kv_heads, spec.head_dim, launches4)
        save_result(args.out, "kv", result)

    if "profile" in parts:
        result["compaction_profile"] = profile_compaction(model, g)
    if "rkv" in parts:
        physical = 4096 + 128
        cache, measured = fresh_cache(model, g, 20_000, "rkv:4096")
        record("rkv4096_loop", "rkv:4096", 20_000, measured, loop(model, cache, g, 4096, 512))
        del cache
        cache, measured = fresh_cache(model, g, physical, "full")
        record("full4224_loop", "full", physical, measured, loop(model, cache, g, 4096, 512, rewind=128))
        del cache
        ratio = result["rkv4096_loop"]["ms"] / result["full4224_loop"]["ms"]
        result["rkv_vs_full"] = ratio
        print(f"rkv:4096 / full at the same physical length: {ratio:.3f}x (target <= 1.07x)")
    for part, bits, length in (("quant8", 8, 16384), ("quant4", 4, 32768)):
        if part not in parts:
            continue
        cache, measured = fresh_cache(model, g, length, "full")
        record(f"full{length}", "full", length, measured, fixed(model, cache, g, length))
        del cache
        cache, measured = fresh_cache(model, g, length, f"quant:{bits}")
        record(f"quant{bits}_{length}", f"quant:{bits}", length, measured, fixed(model, cache, g, length))
        # the same cache with the other way of merging the attention's splits, for comparison
        other = "mergekernel" if cache.store.tickets is not None else "inkernelmerge"
        tickets = torch.zeros(g * spec.num_kv_heads, dtype=torch.int32, device="cuda")
        cache.store.tickets = None if other == "mergekernel" else tickets
        record(
            f"quant{bits}_{length}_{other}", f"quant:{bits}", length, measured, fixed(model, cache, g, length)
        )
        del cache
        ratio = result[f"quant{bits}_{length}"]["ms"] / result[f"full{length}"]["ms"]
        result[f"quant{bits}_vs_full_{length}"] = ratio
        bound = 1.0 if bits == 8 else 0.8
        print(f"quant:{bits} / full at {length}: {ratio:.3f}x (target <= {bound}x)")
    save_result(args.out, "kv", result)


if __name__ == "__main__":
    main()

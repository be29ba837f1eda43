"""Decode-speed and memory benchmarks on random weights of real shapes (no download).

Every speed comes with its roofline: the bytes one decode step must move (each weight read once, the
KV of every row read once), the copy bandwidth measured in the same run, and the resulting HBM bound.
The engine's step is timed as CUDA-graph replays (forward + sampling), and transformers' `generate()`
on the same shape and context is timed in the same run for comparison.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .engine.kvquant import RESIDUAL
from .engine.model import Decoder
from .engine.sampling import SamplingParams, row_seeds
from .engine.step import DecodeStep
from .memory import KVPolicy, Scenario, breakdown, kv_bytes_per_token
from .spec import ModelSpec, registry, registry_lookup


@dataclass(slots=True)
class DecodeBench:
    model: str
    weights: int
    kv: str
    batch: int
    context: int
    ms_per_step: float  # median of graph-replay windows
    tokens_per_s: float
    bytes_per_step: int
    bandwidth_gbps: float  # measured copy bandwidth (read + write)
    hbm_bound_ms: float
    pct_of_bound: float
    loop_ms_per_step: float  # the same step driven from Python with a host sync per step
    peak_bytes: int
    accounted_bytes: int
    accounted_workspace_bytes: int
    peak_vs_accounted: float
    before_step_bytes: int  # allocated after weights and cache, before compiling/capturing the step
    after_capture_bytes: int
    hf_ms_per_step: float | None = None
    speedup_vs_hf: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def save_result(out: str | Path, name: str, result: dict) -> Path:
    """Write a benchmark's result as out/name.json (the folder is created) and return the path."""
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path


def copy_bandwidth(device: torch.device, nbytes: int = 2 << 30, reps: int = 10) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    src = torch.randn(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return 2 * nbytes / statistics.median(times)


def time_replays(fn, reps: int = 50, windows: int = 5) -> float:
    """Median milliseconds per call over `windows` windows of `reps` calls, timed with CUDA events."""
    for _ in range(5):
        fn()
    per_call = []
    for _ in range(windows):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / reps)
    return statistics.median(per_call)


def step_bytes(model: Decoder, batch: int, context: int, kv_bits: int | None = None) -> int:
    """Bytes a decode step must move: all weights once (an untied embedding only G rows: not counted)
    plus K and V of `context` tokens for every row (with `kv_bits`: codes and their scales and zeros,
    except the newest RESIDUAL tokens, which attention reads from the 16-bit ring)."""
    weights = model.weight_bytes
    if model.embed.data_ptr() != model.lm_head.data_ptr():
        weights -= model.embed.numel() * model.embed.element_size()
    exact = kv_bytes_per_token(model.spec, None, model.embed.element_size())
    if kv_bits is None:
        return weights + batch * context * int(exact)
    ring = min(context, RESIDUAL)
    per_row = (context - ring) * kv_bytes_per_token(model.spec, kv_bits) + ring * exact
    return weights + int(batch * per_row)


def fill_random(cache) -> None:
    """Random, never-zero data in every slot of a cache (16-bit K/V and rings: normal; codes: uniform
    bytes; scales 0.01), so a timed step reads what a real one would."""
    store = cache.store
    for t in [
        *getattr(store, "k", []),
        *getattr(store, "v", []),
        *getattr(store, "kr", []),
        *getattr(store, "vr", []),
    ]:
        t.normal_()
    for t in [*getattr(store, "kc", []), *getattr(store, "vc", [])]:
        t.random_(0, 256)
    for t in [*getattr(store, "ks", []), *getattr(store, "vs", [])]:
        t.fill_(0.01)


def check_bench_kv(kv: str) -> KVPolicy:
    """The KV policy of a timed step: `full` or `quant:Q`. Eviction is refused: one step at a fixed
    context leaves out its compactions, whose cost depends on the schedule."""
    policy = KVPolicy.parse(kv)
    if policy.eviction:
        raise ValueError(
            f"membudget bench times one decode step at a fixed context, which leaves out the compactions "
            f"of an eviction policy ({kv!r}); use --kv full or quant:Q"
        )
    return policy


def bench_engine(
    spec: ModelSpec,
    batch: int,
    context: int,
    bandwidth: float,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cuda",
    weights: int = 16,
    kv: str = "full",
    in_kernel_merge: bool | None = None,
) -> DecodeBench:
    """Time the engine's graph-captured decode step (Qwen3 sampling defaults) at `context` tokens,
    with `weights`-bit linears and a `full` or `quant:Q` cache. `in_kernel_merge` True/False forces the
    attention's split merge inside its kernel or in the merge kernel (default: the cache store's own
    choice, engine/kvstore.py), for comparison."""
    policy = check_bench_kv(kv)
    dev = torch.device(device)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    model = Decoder.random(spec, dtype, dev)
    model.quantize_(weights)
    torch.cuda.reset_peak_memory_stats(dev)  # the 16-bit weights a quantized model was built from are gone
    capacity = context + 64
    cache = model.new_cache(batch, capacity, kv)
    if in_kernel_merge is not None:
        cache.store.tickets = (
            torch.zeros(batch * spec.num_kv_heads, dtype=torch.int32, device=dev) if in_kernel_merge else None
        )
    fill_random(cache)
    before = torch.cuda.memory_allocated(dev)
    step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, batch))
    after = torch.cuda.memory_allocated(dev)
    ids = torch.randint(0, spec.vocab_size, (batch,))
    positions = torch.full((batch,), context - 1)  # attends over `context` tokens
    step.run(ids, positions)
    ms = time_replays(lambda: step.run(ids, positions))

    def host_loop():
        step.run(ids, positions).tolist()

    loop_ms = time_replays(host_loop, reps=20, windows=3)
    peak = torch.cuda.max_memory_allocated(dev)
    accounted = breakdown(spec, Scenario(spec.name, weights, kv, capacity, batch))
    moved = step_bytes(model, batch, context, policy.bits)
    bound_ms = moved / bandwidth * 1e3
    return DecodeBench(
        model=spec.name,
        weights=weights,
        kv=kv,
        batch=batch,
        context=context,
        ms_per_step=ms,
        tokens_per_s=batch * 1e3 / ms,
        bytes_per_step=moved,
        bandwidth_gbps=bandwidth / 1e9,
        hbm_bound_ms=bound_ms,
        pct_of_bound=100 * bound_ms / ms,
        loop_ms_per_step=loop_ms,
        peak_bytes=peak,
        accounted_bytes=accounted.total_bytes,
        accounted_workspace_bytes=accounted.workspace_bytes,
        peak_vs_accounted=peak / accounted.total_bytes,
        before_step_bytes=before,
        after_capture_bytes=after,
    )


def bench_transformers(
    spec: ModelSpec, batch: int, context: int, new_tokens: int = 32, device: str = "cuda"
) -> float:
    """ms per decode step of transformers' generate() (dynamic cache, greedy) on random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    gc.collect()
    torch.cuda.empty_cache()
    fields = dict(registry()[registry_lookup(spec.name)])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    prompt = torch.randint(0, spec.vocab_size, (batch, context), device=device)

    def run(n: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(2)  # warm-up
    prefill = min(run(1) for _ in range(2))
    total = min(run(1 + new_tokens) for _ in range(2))
    return (total - prefill) / new_tokens * 1e3

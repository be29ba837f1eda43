"""How long a sweep will take, before it runs: the engine's step model, and a rehearsal on random weights.

The step model: a decode step of R rows reads every weight once and each row's held KV once, so

    t = FIXED + weight bytes / (BANDWIDTH * WEIGHT_SHARE[bits]) + KV bytes / (BANDWIDTH * KV_SHARE[bits]) + HOST

with the constants fitted to the step benchmarks of bench/BASELINE.md (one H200, copy bandwidth
4.21 TB/s): bf16 decode of Qwen3-0.6B and -8B at 1 and 16 rows (the fit is within 1.1 % of all four),
one-row int8/int4 weights of Qwen3-8B, and `quant:8` / `quant:4` against `full` at 16 rows. Quantized
weights of two or more rows go through another kernel (engine/kernels/qlinear.py's dequantized tile)
with its own share where one was measured: 4-bit at 16 rows, an H100's graph step scaled to the H200 by
the two copy bandwidths (the same scaling puts the 16-bit step of that run within 1 % of the model);
8-bit rows take the one-row share, not measured and likely optimistic. HOST is
the Python loop's share per step (host sync, cache books). Eviction loops cost COMPACTION more than
a full cache of the same held length (measured for R-KV, taken for every method). Not modelled: the
prefill (compute-bound, small beside thousands of decode steps), `quant:2` (taken as `quant:4`), and
a GPU other than the H200 (scale by its bandwidth: an H100 moves about 0.7x).

The rehearsal (`membudget sweep --rehearse`) checks the model where it runs: each group's real shapes
on random weights on the local device, a few hundred steps through the cache's own books (compactions
included) from the middle of the group's context, extrapolated to the group's steps, with torch's peak
memory beside the accounting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial

from ..memory import KVPolicy, kv_bytes_per_token, weight_bytes
from ..spec import ModelSpec
from .batching import Batch

DEVICE = "one H200"
BANDWIDTH = 4.214e12  # bytes/s, the copy bandwidth of the calibration runs
FIXED = 0.455e-3  # s per step: kernel launches and the sampling draw beside the bytes
HOST = 0.08e-3  # s per step: the generation loop's host work (loop ms - graph ms in bench/BASELINE.md)
WEIGHT_SHARE = {16: 0.926, 8: 0.679, 4: 0.546}  # of BANDWIDTH, reading weights for one row
ROWS_WEIGHT_SHARE = {4: 0.348}  # the same for two or more rows of quantized weights, where measured
KV_SHARE = {None: 0.959, 8: 0.545, 4: 0.402, 2: 0.402}  # of BANDWIDTH, reading K and V
COMPACTION = 1.063  # an eviction loop against a full cache of the same held length


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """One (model, weights, KV, task) group of a sweep: its generations and their decode steps."""

    model: str
    weights: int
    kv: str
    task: str
    generations: int  # problems / problems per generation, times sample passes
    rows: int  # rows of one generation
    prompt: int  # tokens of the longest prompt (estimated)
    steps: int  # decode steps of one generation: the largest budget and one answer phase per budget
    budget: int  # the largest budget
    answer: int  # slots of one answer phase


def group_plan(model, weights, kv, task, problems: int, batch: Batch, samples: int, prompt: int,
               budgets: tuple[int, ...], answer: int) -> GroupPlan:  # fmt: skip
    """The generations of `problems` problems in batches of `batch` (rows 0: `samples` per problem)."""
    rows = batch.rows or batch.problems * samples
    generations = math.ceil(problems / batch.problems) * batch.passes
    steps = max(budgets) + answer * len(budgets)
    return GroupPlan(model, weights, kv, task, generations, rows, prompt, steps, max(budgets), answer)


def mean_held(policy: KVPolicy, prompt: int, budget: int) -> float:
    """Mean tokens a row holds over its thinking steps: prompt + t for t < budget, capped for an
    evicting cache at B plus half its buffer (it fills to B + buffer, then compacts to B)."""
    cap = math.inf if policy.eviction is None else policy.budget + policy.slack / 2
    if prompt + budget <= cap:
        return prompt + (budget - 1) / 2
    rising = max(0, math.ceil(cap - prompt))  # steps before the cap
    below = rising * prompt + rising * (rising - 1) / 2
    return (below + (budget - rising) * cap) / budget


def moved_bytes(spec: ModelSpec, weights: int, kv: str, rows: int, held: float) -> tuple[float, float]:
    """(weight bytes, KV bytes) one decode step of `rows` rows holding `held` tokens each must read: every
    weight once (an untied embedding only for the rows' tokens: not counted), every row's K and V."""
    moved_weights = weight_bytes(spec, weights)
    if not spec.tie_word_embeddings:
        moved_weights -= 2 * spec.vocab_size * spec.hidden_size
    return moved_weights, rows * held * kv_bytes_per_token(spec, KVPolicy.parse(kv).bits)


def step_seconds(spec: ModelSpec, weights: int, kv: str, rows: int, held: float) -> float:
    """Seconds of one decode step of the generation loop (the step model above)."""
    policy = KVPolicy.parse(kv)
    moved_weights, kv_moved = moved_bytes(spec, weights, kv, rows, held)
    share = ROWS_WEIGHT_SHARE.get(weights, WEIGHT_SHARE[weights]) if rows > 1 else WEIGHT_SHARE[weights]
    t = FIXED + moved_weights / (BANDWIDTH * share) + kv_moved / (BANDWIDTH * KV_SHARE[policy.bits])
    return (t * (COMPACTION if policy.eviction else 1.0)) + HOST


def estimate_seconds(spec: ModelSpec, group: GroupPlan) -> float:
    """The step model's time for a group's decode steps on one H200."""
    held = mean_held(KVPolicy.parse(group.kv), group.prompt, group.budget)
    return group.generations * group.steps * step_seconds(spec, group.weights, group.kv, group.rows, held)


@dataclass(frozen=True, slots=True)
class Rehearsal:
    steps: int  # timed steps
    seconds_per_step: float  # measured, through the loop's host work
    estimate_seconds: float  # the group's decode steps at that rate
    peak_bytes: int  # torch's peak over the rehearsal (its weights as held, cache, step)
    accounted_bytes: int  # `membudget memory` for the same generation


def rehearse(
    spec: ModelSpec,
    group: GroupPlan,
    device: str,
    dtype: str,
    steps: int = 256,
    warmup: int = 16,
    seconds: float = 10.0,
) -> Rehearsal:
    """Time `steps` decode steps of the group's shapes (its rows, weights, KV policy; random weights and
    cache contents in `dtype`) on `device`, after `warmup` untimed ones, from the middle of its
    thinking (an evicting cache: from its limit, so the steps cross compactions), advancing the
    cache's books as the loop does. Stops early once the timed steps took `seconds` (a slow device,
    such as a CPU), but an evicting cache only after a whole compaction cycle."""
    import torch

    from ..engine.load import DTYPES
    from ..engine.model import Decoder
    from ..engine.sampling import SamplingParams, row_seeds
    from ..engine.step import DecodeStep
    from ..timing import fill_random
    from .batching import generation_bytes

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    policy = KVPolicy.parse(group.kv)
    model = Decoder.random(spec, DTYPES[dtype], dev)
    model.quantize_(group.weights)
    if cuda:  # from here: the random model is built 16-bit first, which a real load never holds at once
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    capacity = group.prompt + group.budget + group.answer
    cache = model.new_cache(group.rows, capacity, group.kv, group.answer)  # as the generation allocates it
    fill_random(cache)
    middle = group.prompt + group.budget // 2
    # an evicting cache just below its limit, so that its first compaction (and the compile of its
    # kernels) falls in the warm-up and the timed steps cycle from B to B + buffer as in the loop; a
    # full one centred on the middle of the thinking; both within the positions the cache was built for
    start = min(middle, cache.limit - warmup // 2) if policy.eviction else max(1, middle - steps // 2)
    steps = max(1, min(steps, capacity - start - warmup - 1))
    cache.start_at(start)
    step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, group.rows))
    every = list(range(group.rows))
    ids = torch.randint(0, spec.vocab_size, (group.rows,))
    elapsed, held, timed = 0.0, 0.0, 0
    cycle = policy.slack if policy.eviction else 1
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        slots, qslots = cache.where([True] * group.rows)
        positions = torch.tensor(cache.seen)
        ids = step.run(ids, positions, torch.tensor(slots), torch.tensor(qslots)).cpu()
        cache.advance(every, every)
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            held += slots[0] + 1
            timed += 1
            if elapsed >= seconds and timed % cycle == 0:
                break
    per_step, held = elapsed / timed, held / timed
    peak = torch.cuda.max_memory_allocated(dev) if cuda else 0
    accounted = generation_bytes(
        spec, group.weights, group.kv, group.budget, group.rows, group.prompt, group.answer
    )
    # the step grows with the held context: scale from the rehearsed one to the group's mean
    model_step = partial(step_seconds, spec, group.weights, group.kv, group.rows)
    scale = model_step(mean_held(policy, group.prompt, group.budget)) / model_step(held)
    return Rehearsal(timed, per_step, group.generations * group.steps * per_step * scale, peak, accounted)

"""Top-k sampling of a decode step in three kernels, for small k (engine/sampling.py's filters and noise).

`torch.topk` over a 151,936-token vocabulary runs a multi-pass radix select: with the softmax, the
cumulative sum and the gathers after it, sampling cost ~70 µs of a Qwen3-0.6B batch-1 step on an H200,
a chain of ~20 small kernels; these three charge ~13 µs of the step (trace-v10-warps-*.json:
`_chunk_top_k` 7.9, `_rank` 2.9-4.1, `_pick` 1.1). Each candidate is an int64
key (`_keys`) that orders (logit descending, token id ascending) as an integer, so one reduction
finds the largest and ties go to the lower token id. Here:

1. `_chunk_top_k`: program (row, chunk) keeps the K largest keys of CHUNK tokens (K rounds of one
   block max each) -> candidates [G, chunks * K].
2. `_rank`: program (row, RANK_BLOCK candidates) counts, for each of its candidates, the larger ones
   among all of the row's (one load, one comparison matrix); a candidate ranked r < K is stored at
   slot r -> the K largest [G, K], descending. (K rounds of block reductions over all candidates in
   one program per row took 28-33 µs: session 9's `_pick`.)
3. `_pick`: program (row, one warp) divides the K values by the temperature and applies sampling.py's
   top-p / min-p filters and its counter-based Gumbel noise to draw the token: the same arithmetic as
   `sampling.sample`, in another summation order.

A row's token depends only on its own logits, seed and position, as in the torch path. The torch
path stays for CPUs, for top-k off or above MAX_K, and for greedy decoding.
Tested against `sampling.sample` in the interpreter (tests/kernels/check_sample.py).

Shapes: logits [G, V] fp32 (any row stride), seeds and positions [G] int64 -> tokens [G] int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import await_inputs, use_pdl

# Larger top-k goes through torch: the first kernel takes K rounds of block reductions, so its cost
# grows with K (7.9 µs at K = 20; torch's path ~70 µs; larger K not measured).
MAX_K = 32
CHUNK = 2048  # tokens per program of the first kernel
RANK_BLOCK = 16  # candidates ranked per program of the second
WARPS = {
    "chunk": 4,
    "rank": 16,
}  # warps per program of the first two kernels (measured fastest)
_M32 = 0xFFFFFFFF
LOWEST: tl.constexpr = tl.constexpr(-(2**63))  # below every key


@triton.jit
def _keys(values, ids):
    """int64 keys that order (value descending, then token id ascending) as integers descending: the
    fp32 value's bits made monotone (and -0.0 made +0.0) in the high word, the id's complement below."""
    bits = tl.where(values == 0, 0.0, values).to(tl.int32, bitcast=True)
    ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return (ordered.to(tl.int64) << 32) | ((~ids).to(tl.int64) & 0xFFFFFFFF)


@triton.jit
def _value(keys):
    """The fp32 values of `_keys`."""
    bits = (keys >> 32).to(tl.int32)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.float32, bitcast=True)


@triton.jit
def _chunk_top_k(
    logits,  # [G, V] fp32
    cand_keys,  # [G, CHUNKS * K] int64 (`_keys`)
    V,
    s_lg,
    s_cg,
    K: tl.constexpr,
    CHUNK: tl.constexpr,
    PDL: tl.constexpr,
):
    await_inputs(PDL)
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    offs = chunk * CHUNK + tl.arange(0, CHUNK)
    x = tl.load(logits + row.to(tl.int64) * s_lg + offs, mask=offs < V, other=-float("inf"))
    keys = _keys(x, offs)
    out = cand_keys + row.to(tl.int64) * s_cg + chunk * K
    for i in tl.static_range(K):  # keys are distinct (distinct ids): one reduction a round
        best = tl.max(keys, axis=0)
        tl.store(out + i, best)
        keys = tl.where(keys == best, LOWEST, keys)


@triton.jit
def _mix(x):
    """sampling._mix: a 32-bit integer hash on int64 values."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    return (x >> 16) ^ x


@triton.jit
def _rank(
    cand_keys,  # [G, CANDS] int64 (`_keys`)
    top_keys,  # [G, K] int64: the K largest candidates, descending
    CANDS,
    s_cg,
    s_tg,
    K: tl.constexpr,
    BLOCK: tl.constexpr,  # candidates ranked per program
    ALL: tl.constexpr,  # a power of two >= CANDS
    PDL: tl.constexpr,
):
    await_inputs(PDL)
    row = tl.program_id(0)
    cands = cand_keys + row.to(tl.int64) * s_cg
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mine = tl.load(cands + offs, mask=offs < CANDS, other=LOWEST)
    every = tl.arange(0, ALL)
    keys = tl.load(cands + every, mask=every < CANDS, other=LOWEST)  # one load of all candidates
    # how many candidates are larger; keys are distinct (distinct ids), so ranks are too
    rank = tl.sum((keys[None, :] > mine[:, None]).to(tl.int32), axis=1)
    tl.store(top_keys + row.to(tl.int64) * s_tg + rank, mine, mask=(offs < CANDS) & (rank < K))


@triton.jit
def _pick(
    top_keys,  # [G, K] int64 (`_keys`), descending
    seeds,  # [G] int64
    positions,  # [G] int64
    out,  # [G] int64
    s_tg,
    temperature,
    top_p,
    min_p,
    K: tl.constexpr,
    K_POW2: tl.constexpr,
    TOP_P: tl.constexpr,
    MIN_P: tl.constexpr,
    PDL: tl.constexpr,
):
    await_inputs(PDL)
    row = tl.program_id(0)
    slot = tl.arange(0, K_POW2)
    top = tl.load(top_keys + row.to(tl.int64) * s_tg + slot, mask=slot < K, other=LOWEST)
    values = tl.where(slot < K, _value(top) / temperature, -float("inf"))
    tokens = (~top) & 0xFFFFFFFF
    probs = tl.exp(values - tl.max(values, axis=0))
    probs = probs / tl.sum(probs, axis=0)
    drop = slot >= K
    if TOP_P:  # keep the smallest set reaching top_p
        drop |= (tl.cumsum(probs, axis=0) - probs) > top_p
    if MIN_P:
        drop |= probs < min_p * tl.max(probs, axis=0)
    values = tl.where(drop, -float("inf"), values)
    # sampling.gumbel: counter-based noise from (seed, position, token)
    seed = tl.load(seeds + row)
    position = tl.load(positions + row)
    h = (seed * 0x2545F491 & 0xFFFFFFFF) ^ _mix(position * 0x61C88647 & 0xFFFFFFFF)
    h = _mix(h ^ (tokens * 0x7FEB352D & 0xFFFFFFFF))
    u = ((h >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    score = values - tl.log(-tl.log(u))
    best = tl.max(score, axis=0)
    choice = tl.min(tl.where(score == best, slot, K_POW2), axis=0)
    tl.store(out + row, tl.sum(tl.where(slot == choice, tokens, 0), axis=0))


@torch.library.custom_op("membudget::sample_top_k", mutates_args=())
def sample_top_k(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    positions: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
) -> torch.Tensor:
    """Tokens [G] drawn from logits [G, V] (fp32) as `sampling.sample` draws them, for top_k > 0 (the
    engine calls it for top_k <= MAX_K; launched as an opaque op: engine/kernels/launch.py)."""
    rows, vocab = logits.shape
    k = min(top_k, vocab)
    chunks = triton.cdiv(vocab, CHUNK)
    cands = torch.empty(rows, chunks * k, dtype=torch.int64, device=logits.device)
    top = torch.empty(rows, k, dtype=torch.int64, device=logits.device)
    out = torch.empty(rows, dtype=torch.int64, device=logits.device)
    pdl = use_pdl(logits.device)
    _chunk_top_k[(rows, chunks)](
        logits, cands, vocab, logits.stride(0), cands.stride(0),
        K=k, CHUNK=CHUNK, PDL=pdl, num_warps=WARPS["chunk"], launch_pdl=pdl,
    )  # fmt: skip
    _rank[(rows, triton.cdiv(chunks * k, RANK_BLOCK))](
        cands, top, chunks * k, cands.stride(0), top.stride(0),
        K=k, BLOCK=RANK_BLOCK, ALL=triton.next_power_of_2(chunks * k), PDL=pdl, num_warps=WARPS["rank"],
        launch_pdl=pdl,
    )  # fmt: skip
    _pick[(rows,)](
        top, seeds, positions, out, top.stride(0), temperature, top_p, min_p,
        K=k, K_POW2=triton.next_power_of_2(k), TOP_P=top_p < 1, MIN_P=min_p > 0, PDL=pdl,
        num_warps=1, launch_pdl=pdl,
    )  # fmt: skip
    return out


@sample_top_k.register_fake
def _(logits, seeds, positions, temperature, top_k, top_p, min_p):
    return logits.new_empty(logits.shape[0], dtype=torch.int64)


def supports(logits: torch.Tensor, top_k: int) -> bool:
    """Whether these kernels take the draw: CUDA fp32 logits and 0 < top_k <= MAX_K."""
    return logits.is_cuda and logits.dtype == torch.float32 and 0 < top_k <= MAX_K

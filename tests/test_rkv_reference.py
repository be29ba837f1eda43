"""`rkv` against an independent fp64 implementation of the R-KV reference's scoring (arXiv 2505.24133;
the R1KV class of the authors' repository), written here from its formulas: the kept sets of one
compaction must agree (mean Jaccard >= 0.98 per KV head) on random, LLM-like and repetitive keys,
with window keys that dominate the softmax, at budgets from n/8 to n-128, GQA 16/8, head_dim 128."""

import math

import pytest
import torch

from membudget.engine.policies.rkv import RKV

N, HEADS, KV_HEADS, D, ROWS, WINDOW = 640, 16, 8, 128, 2, 8


def reference_kept(keys, queries, budget, lam=0.1, kernel=7, threshold=0.5, window_in_softmax=False):
    """keys [R, H_kv, n, D], queries [R, H, w, D] (the newest w slots') -> kept slots as a list of
    sets per (row, KV head). fp64, every n x n entry written out."""
    k, q = keys.double(), queries.double()
    r, kv_heads, n, d = k.shape
    w = q.shape[2]
    group = q.shape[1] // kv_heads
    past = n - w
    # importance: window queries over the past keys, the strongest head of the group per entry
    logits = torch.einsum("rhgmd,rhnd->rhgmn", q.reshape(r, kv_heads, group, w, d), k) / math.sqrt(d)
    logits = logits.max(dim=2).values  # [R, H_kv, w, n]
    if window_in_softmax:  # the rule our old code used, for the sensitivity check
        causal = torch.arange(n)[None, :] > torch.arange(past, n)[:, None]
        probs = logits.masked_fill(causal, -math.inf).softmax(-1)[..., :past]
    else:
        probs = logits[..., :past].softmax(-1)
    attention = probs.mean(dim=2)  # [R, H_kv, past]
    half = kernel // 2
    padded = torch.nn.functional.pad(attention, (half, half), value=-math.inf)
    importance = padded.unfold(-1, kernel, 1).max(-1).values  # [R, H_kv, past]
    # redundancy: cosine similarity, zero diagonal, each row's newest near-duplicate zeroed
    unit = k / (k.norm(dim=-1, keepdim=True) + 1e-8)
    sim = unit @ unit.transpose(-1, -2)
    sim = sim * (1 - torch.eye(n, dtype=sim.dtype))
    slots = torch.arange(n).expand_as(sim)
    newest = torch.where(sim > threshold, slots, torch.zeros_like(slots)).max(-1).values  # 0 if none
    sim = sim.scatter(-1, newest[..., None], 0.0)
    redundancy = sim.mean(dim=-2).softmax(-1)[..., :past]
    score = lam * importance - (1 - lam) * redundancy
    top = score.topk(budget - w, dim=-1).indices
    return [[set(top[i, h].tolist()) | set(range(past, n)) for h in range(kv_heads)] for i in range(r)]


def ours_kept(keys, queries, budget):
    policy = RKV(budget=budget)
    keep = policy.select(policy.score(keys, queries, None, D**-0.5))
    return [[set(keep[i, h].tolist()) for h in range(keys.shape[1])] for i in range(keys.shape[0])]


def mean_jaccard(a, b):
    pairs = [(x, y) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True)]
    return sum(len(x & y) / len(x | y) for x, y in pairs) / len(pairs)


def make_keys(kind: str, seed: int):
    """(keys [R, H_kv, N, D], queries [R, H, WINDOW, D]) fp32 of one of four kinds."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    if kind == "random":
        return randn(ROWS, KV_HEADS, N, D), randn(ROWS, HEADS, WINDOW, D)
    if kind == "llm":  # a shared offset, a few outlier channels, low-rank content; queries echo keys
        basis = randn(ROWS, KV_HEADS, 16, D)
        keys = randn(ROWS, KV_HEADS, N, 16) @ basis + 0.3 * randn(ROWS, KV_HEADS, N, D)
        keys = keys + 2.0 * randn(ROWS, KV_HEADS, 1, D)
        keys[..., :4] *= 8.0
        picks = torch.randint(0, N, (ROWS, KV_HEADS, 2 * WINDOW), generator=g)
        echoed = keys.gather(2, picks[..., None].expand(-1, -1, -1, D)).reshape(ROWS, KV_HEADS, 2, WINDOW, D)
        queries = 0.3 * echoed.reshape(ROWS, HEADS, WINDOW, D) + 0.5 * randn(ROWS, HEADS, WINDOW, D)
        return keys, queries
    if kind == "repetitive":  # a reasoning trace that loops: period-37 phrases, slightly perturbed
        phrase = randn(ROWS, KV_HEADS, 37, D)
        keys = phrase.repeat(1, 1, math.ceil(N / 37), 1)[:, :, :N] + 0.4 * randn(ROWS, KV_HEADS, N, D)
        keys[:, :, ::5] = randn(ROWS, KV_HEADS, len(range(0, N, 5)), D)  # fresh content between loops
        return keys, 0.2 * randn(ROWS, HEADS, WINDOW, D) + keys[:, :, -WINDOW:].repeat_interleave(2, 1) * 0.1
    if kind == "window":  # the window's own keys take most of each query's attention
        keys, queries = randn(ROWS, KV_HEADS, N, D), randn(ROWS, HEADS, WINDOW, D)
        keys[:, :, -WINDOW:] = 2.0 * queries.reshape(ROWS, KV_HEADS, 2, WINDOW, D).mean(2)
        return keys, queries
    raise ValueError(kind)


KINDS = ["random", "llm", "repetitive", "window"]
BUDGETS = [N // 8, N // 4, N // 3, N // 2, N - 128]


@pytest.mark.parametrize("kind", KINDS)
def test_rkv_keeps_the_references_tokens(kind):
    keys, queries = make_keys(kind, seed=KINDS.index(kind))
    for budget in BUDGETS:
        jaccard = mean_jaccard(ours_kept(keys, queries, budget), reference_kept(keys, queries, budget))
        assert jaccard >= 0.98, (kind, budget, jaccard)


def test_the_keys_tell_the_rules_apart():
    """The cases above can fail: R-KV with the window's keys in the importance softmax, or without
    the redundancy term, keeps other tokens on them."""
    keys, queries = make_keys("window", seed=3)
    budget = N // 4
    faithful = reference_kept(keys, queries, budget)
    assert mean_jaccard(faithful, reference_kept(keys, queries, budget, window_in_softmax=True)) < 0.9
    keys, queries = make_keys("repetitive", seed=2)
    assert (
        mean_jaccard(reference_kept(keys, queries, budget), reference_kept(keys, queries, budget, lam=1.0))
        < 0.9
    )


def test_redundancy_spares_the_newest_of_a_run_of_duplicates():
    """Ten near-copies of one key: the newest copy's column loses the most (every other copy's row
    zeroes it), so it scores least redundant of the run."""
    keys = torch.randn(1, 1, 64, D, generator=torch.Generator().manual_seed(0))
    keys[:, :, 20:30] = keys[:, :, 20:21] + 0.05 * torch.randn(1, 1, 10, D)
    red = RKV(budget=32).redundancy(keys)[0, 0]
    assert red[20:30].argmin().item() == 9

"""R-KV (arXiv 2505.24133): importance minus redundancy, for reasoning traces that repeat themselves.

Scored as the authors' reference code scores (the R1KV class of the Zefan-Cai/R-KV repository);
docs/POLICIES.md compares every parameter. Of n slots the newest alpha = 8 (the observation window,
whose queries the cache records) are always kept; the other n - alpha ("past") compete:

importance: logits of the alpha window queries over the past keys only, max over the query heads of
            a KV group, softmax over the past keys, mean over the alpha queries, 1-D max-pool
            (kernel 7, stride 1) along the past;
redundancy: cosine similarity S of every pair of keys of a head (all n, the window's included), its
            diagonal 0; in each row i the entry of i's newest near-duplicate (the largest j with
            S[i, j] > 0.5; j = 0 when i has none) is zeroed; the column means over all n rows,
            softmax over all n slots, then the past part;
score = lam * importance - (1 - lam) * redundancy. lam = 0.1 as in the paper, the README and the
reference's run script (`--mix_lambda 0.1`); the R1KV class's own default is 0.07.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class RKV(EvictionPolicy):
    window: int = 8  # alpha: the observation window, always kept
    recent: int = 8
    lam: float = 0.1
    pool: int = 7
    threshold: float = 0.5
    name = "rkv"

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        """keys [R, H_kv, n, D], queries [R, H, alpha, D] of slots n-alpha..n-1 -> [R, H_kv, n]; the
        window's own entries are 0 (`select` keeps them anyway)."""
        r, kv_heads, n, _ = keys.shape
        past = n - self.recent
        logits = attention_logits(queries, keys, scale)[..., :past].amax(dim=2)  # [R, H_kv, alpha, past]
        importance = logits.softmax(dim=-1).mean(dim=2)  # [R, H_kv, past]
        importance = F.max_pool1d(
            importance.reshape(r * kv_heads, 1, past), self.pool, stride=1, padding=self.pool // 2
        ).reshape(r, kv_heads, past)
        score = self.lam * importance - (1 - self.lam) * self.redundancy(keys)[..., :past]
        return F.pad(score, (0, n - past))

    def redundancy(self, keys: torch.Tensor) -> torch.Tensor:
        """keys [R, H_kv, n, D] -> softmax over the slots of the column means of S with each row's
        newest near-duplicate entry zeroed: [R, H_kv, n] fp32.

        Column sums come from the sum of all unit keys (O(n D), no fp32 copy of the keys); the pairs
        are needed only to find each row's newest near-duplicate, done by a fused Triton kernel on
        CUDA (never writing the n x n matrix)."""
        r, kv_heads, n, d = keys.shape
        norm = torch.linalg.vector_norm(keys, dim=-1, dtype=torch.float32)  # [R, H_kv, n]
        inv = 1.0 / (norm + 1e-8)  # the reference's k / (|k| + 1e-8)
        unit = keys * inv[..., None].to(keys.dtype)  # [R, H_kv, n, D], keys' dtype
        # column j's sum over rows i != j: unit_j . (sum_i unit_i) - unit_j . unit_j
        total = inv[:, :, None, :].to(keys.dtype) @ keys  # [R, H_kv, 1, D]
        dots = (keys @ total.transpose(-1, -2))[..., 0].float()  # [R, H_kv, n]
        columns = inv * dots - (norm * inv) ** 2
        flat = unit.reshape(r * kv_heads, n, d)
        if keys.is_cuda and d & (d - 1) == 0:
            from ..kernels.similarity import last_twins

            index, sim = last_twins(flat, self.threshold)
        else:
            index, sim = last_twins_reference(flat, self.threshold)
        # a row without a near-duplicate has its entry in column 0 zeroed (the reference's argmax of
        # an all-zero row); the diagonal is already 0
        first = (flat @ flat[:, :1].transpose(-1, -2))[..., 0].float()  # [R*H_kv, n]: S[i, 0]
        first[:, 0] = 0.0
        sim = torch.where(index >= 0, sim, first)
        columns = columns.reshape(r * kv_heads, n).scatter_add(-1, index.clamp_min(0).long(), -sim)
        return (columns / n).softmax(dim=-1).reshape(r, kv_heads, n)


def last_twins_reference(
    unit: torch.Tensor, threshold: float, block_elements: int = 2**26
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in torch, a block of key rows at a time (bounded memory): unit [B, n, D] ->
    (index int32 [B, n], similarity fp32 [B, n])."""
    b, n, _ = unit.shape
    slots = torch.arange(n, device=unit.device)
    block = max(1, block_elements // (b * n))
    index, value = [], []
    for start in range(0, n, block):
        rows = slots[start : start + block]
        sim = (unit[:, rows] @ unit.transpose(-1, -2)).float()  # [B, rows, n]
        sim = sim.masked_fill(slots[None, :] == rows[:, None], 0.0)
        last = torch.where(sim > threshold, slots, -1).amax(dim=-1)  # [B, rows]
        index.append(last.int())
        value.append(torch.where(last >= 0, sim.gather(-1, last.clamp_min(0)[..., None])[..., 0], 0.0))
    return torch.cat(index, dim=-1), torch.cat(value, dim=-1)

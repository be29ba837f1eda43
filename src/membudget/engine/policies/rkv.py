"""R-KV (arXiv 2505.24133): importance minus redundancy, for reasoning traces that repeat themselves.

importance: logits of the newest alpha = 8 queries, max over the query heads of a KV group, softmax
            over the slots, mean over the alpha queries, 1-D max-pool (kernel 7);
redundancy: each key's mean cosine similarity to the other keys of its head, softmax over the slots;
            a key with no newer near-duplicate (similarity > `threshold`) is exempt (0 before the
            softmax), so of a run of near-identical keys the most recent survives;
score = lam * importance - (1 - lam) * redundancy, lam = 0.1; the alpha newest tokens are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class RKV(EvictionPolicy):
    window: int = 8  # alpha
    recent: int = 8
    lam: float = 0.1
    pool: int = 7
    threshold: float = 0.5
    block_elements: int = 2**26  # similarity entries computed at once (256 MiB in fp32)
    name = "rkv"

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        logits = attention_logits(queries, keys, scale).amax(dim=2)  # [R, H_kv, m, n]
        importance = logits.softmax(dim=-1).mean(dim=2)  # [R, H_kv, n]
        r, kv_heads, n = importance.shape
        importance = F.max_pool1d(
            importance.reshape(r * kv_heads, 1, n), self.pool, stride=1, padding=self.pool // 2
        ).reshape(r, kv_heads, n)
        return self.lam * importance - (1 - self.lam) * self.redundancy(keys).softmax(dim=-1)

    def redundancy(self, keys: torch.Tensor) -> torch.Tensor:
        """keys [R, H_kv, n, D] -> mean similarity to the other keys, 0 where exempt: [R, H_kv, n]."""
        unit = F.normalize(keys.float(), dim=-1)
        r, kv_heads, n, _ = keys.shape
        slots = torch.arange(n, device=keys.device)
        block = max(1, self.block_elements // (r * kv_heads * n))
        out = []
        for start in range(0, n, block):
            rows = slots[start : start + block]
            sim = unit[:, :, rows] @ unit.transpose(-1, -2)  # [R, H_kv, b, n]
            sim[:, :, torch.arange(rows.shape[0]), rows] = 0.0
            newer_twin = ((sim > self.threshold) & (slots[None, :] > rows[:, None])).any(dim=-1)
            out.append(torch.where(newer_twin, sim.sum(dim=-1) / max(n - 1, 1), 0.0))
        return torch.cat(out, dim=-1)

"""SnapKV (arXiv 2404.14469), applied at every compaction: the attention of an observation window of
the newest 32 queries (softmax over every slot they see, the window's own included), summed over the
window, averaged over the query heads of a KV group, cut to the slots before the window and smoothed
there by average pooling (kernel 7, zero padding); the window's own tokens are always kept.
docs/POLICIES.md compares each parameter with the paper and kvpress's SnapKVPress."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class SnapKV(EvictionPolicy):
    window: int = 32
    recent: int = 32
    pool: int = 7
    name = "snapkv"

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        probs = attention_logits(queries, keys, scale).softmax(dim=-1)  # [R, H_kv, rep, m, n]
        past = keys.shape[2] - self.recent
        votes = probs.sum(dim=3).mean(dim=2)[..., :past]  # [R, H_kv, past]: the window is kept anyway
        r, kv_heads, _ = votes.shape
        pooled = F.avg_pool1d(
            votes.reshape(r * kv_heads, 1, past), self.pool, stride=1, padding=self.pool // 2
        )
        return F.pad(pooled.reshape(r, kv_heads, past), (0, self.recent))

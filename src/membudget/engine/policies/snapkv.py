"""SnapKV (arXiv 2404.14469), applied at every compaction: the attention of an observation window of
the newest 32 queries, summed over the window, averaged over the query heads of a KV group and
smoothed by average pooling (kernel 7); the window's own tokens are always kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...memory import EVICTION_WINDOW
from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class SnapKV(EvictionPolicy):
    window: int = EVICTION_WINDOW["snapkv"]
    recent: int = 32
    pool: int = 7
    name = "snapkv"

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        probs = attention_logits(queries, keys, scale).softmax(dim=-1)  # [R, H_kv, rep, m, n]
        votes = probs.sum(dim=3).mean(dim=2)  # [R, H_kv, n]
        r, kv_heads, n = votes.shape
        pooled = F.avg_pool1d(votes.reshape(r * kv_heads, 1, n), self.pool, stride=1, padding=self.pool // 2)
        return pooled.reshape(r, kv_heads, n)

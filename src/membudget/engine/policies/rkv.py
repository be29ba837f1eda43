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

from ...memory import EVICTION_WINDOW
from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class RKV(EvictionPolicy):
    window: int = EVICTION_WINDOW["rkv"]  # alpha
    recent: int = 8
    lam: float = 0.1
    pool: int = 7
    threshold: float = 0.5
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
        """keys [R, H_kv, n, D] -> mean similarity to the other keys, 0 where exempt: [R, H_kv, n].

        The mean comes from the sum of all unit keys (O(n D)); the near-duplicate test needs the
        pairs, done by a fused Triton kernel on CUDA (never writing the n x n matrix)."""
        r, kv_heads, n, d = keys.shape
        norm = torch.linalg.vector_norm(keys, dim=-1, dtype=torch.float32)  # [R, H_kv, n]
        inv = torch.where(norm > 1e-12, 1.0 / norm.clamp_min(1e-12), 0.0)  # 0 for a zero key
        # no fp32 copy of the keys: sum_j unit_j = inv @ keys, unit_i . sum = inv_i (k_i . sum)
        total = inv[:, :, None, :].to(keys.dtype) @ keys  # [R, H_kv, 1, D]
        dots = (keys @ total.transpose(-1, -2))[..., 0].float()  # [R, H_kv, n]
        mean = (inv * dots - (inv > 0).float()) / max(n - 1, 1)
        unit = (keys * inv[..., None].to(keys.dtype)).reshape(r * kv_heads, n, d)  # keys' dtype
        if keys.is_cuda and d & (d - 1) == 0:
            from ..triton_similarity import newer_twins

            twins = newer_twins(unit, self.threshold).bool()
        else:
            from ..triton_similarity import newer_twins_reference

            twins = newer_twins_reference(unit, self.threshold)
        return torch.where(twins.reshape(r, kv_heads, n), mean, 0.0)

"""StreamingLLM (arXiv 2309.17453): the first 4 tokens (attention sinks) and the newest B - 4."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import EvictionPolicy


@dataclass(frozen=True)
class Streaming(EvictionPolicy):
    sinks: int = 4
    name = "streaming"

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        """Newer slots score higher (slots keep the order of positions)."""
        r, kv_heads, n, _ = keys.shape
        return torch.arange(n, dtype=torch.float32, device=keys.device).expand(r, kv_heads, n)

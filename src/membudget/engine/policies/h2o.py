"""H2O (arXiv 2306.14048): heavy hitters by accumulated attention, plus a window of recent tokens.

The attention each slot received from every query since it was written is summed over the query
heads of its KV group. The cache records the queries since the last update and adds their attention
every `buffer` tokens (exact: those queries saw exactly the slots present then), and at compaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import EvictionPolicy, attention_logits


@dataclass(frozen=True)
class H2O(EvictionPolicy):
    recent_share: float = 0.5  # share of the budget given to the newest tokens
    recent: int = field(default=-1)
    window: int = 128  # = buffer: every query between updates is recorded
    accumulates = True
    name = "h2o"

    def __post_init__(self) -> None:
        if self.recent < 0:
            object.__setattr__(self, "recent", int(self.budget * self.recent_share))
        super().__post_init__()

    def accumulate(self, state, keys, queries, scale) -> None:
        probs = attention_logits(queries, keys, scale).softmax(dim=-1)  # [R, H_kv, rep, m, n]
        state += probs.sum(dim=(2, 3))

    def score(self, keys, queries, state, scale) -> torch.Tensor:
        return state

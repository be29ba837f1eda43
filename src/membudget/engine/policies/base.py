"""What every eviction policy shares: the budget, the compaction buffer, forced keeps and top-k.

A policy scores the slots of one layer; the cache (engine/cache.py) calls it when a row holds
`budget + buffer` tokens and moves the `budget` best slots (in their old order) to the front. So a row
never holds more than budget + buffer (+ the answer slots of a budget checkpoint) tokens. A subclass
overrides `score` only; `accumulate` is for policies that sum attention over time (H2O).

The class defaults of `buffer`, `window` and `accumulates` are the policy's facts for the memory
accounting too (memory.eviction_method reads them): declare them once, here or in the subclass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EvictionPolicy:
    budget: int  # B: tokens per row and KV head after a compaction
    buffer: int = 128  # tokens written between compactions (the slack above B)
    sinks: int = 0  # the first tokens, always kept
    recent: int = 0  # the newest tokens, always kept
    window: int = 0  # queries the cache records per row for `score` (the newest ones)
    accumulates = False  # whether `accumulate` keeps a running score per slot

    def __post_init__(self) -> None:
        if self.budget < self.sinks + self.recent + 1:
            raise ValueError(
                f"{self.name}:{self.budget} keeps {self.sinks} sink and {self.recent} recent tokens "
                f"by construction; give it a budget above {self.sinks + self.recent}"
            )
        if self.window > self.buffer or (self.accumulates and self.window != self.buffer):
            raise ValueError(f"{self.name}: the query window must fit the compaction buffer")

    name = "eviction"

    def score(
        self, keys: torch.Tensor, queries: torch.Tensor | None, state: torch.Tensor | None, scale: float
    ) -> torch.Tensor:
        """Importance of each slot (higher is kept): keys [R, H_kv, n, D] of the slots in use, queries
        [R, H, m, D] the newest `window` queries (those of slots n-m..n-1), state [R, H_kv, n] the
        accumulated score (policies that accumulate) -> [R, H_kv, n]."""
        raise NotImplementedError

    def accumulate(
        self, state: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor, scale: float
    ) -> None:
        """Add to state [R, H_kv, n] what the queries [R, H, m, D] of slots n-m..n-1 contribute."""

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """scores [R, H_kv, n] -> the `budget` kept slots [R, H_kv, B], ascending (order is kept)."""
        n = scores.shape[-1]
        s = scores.float().clone()
        s[..., : self.sinks] = float("inf")
        if self.recent:
            s[..., n - self.recent :] = float("inf")
        return s.topk(self.budget, dim=-1, sorted=False).indices.sort(dim=-1).values


def attention_logits(queries: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention logits of the newest m queries over n keys: queries [R, H, m, D], keys
    [R, H_kv, n, D] -> fp32 [R, H_kv, H/H_kv, m, n]; query j (slot n-m+j) sees slots <= its own."""
    r, heads, m, d = queries.shape
    kv_heads, n = keys.shape[1], keys.shape[2]
    q = queries.to(keys.dtype).reshape(r, kv_heads, heads // kv_heads, m, d)
    # in the keys' dtype (no fp32 copy of the cache); only the small [.., m, n] result goes to fp32
    logits = torch.einsum("bgrmd,bgnd->bgrmn", q, keys).float() * scale
    future = (
        torch.arange(n, device=keys.device)[None, :] > torch.arange(n - m, n, device=keys.device)[:, None]
    )
    return logits.masked_fill(future, float("-inf"))

"""The slotted KV cache: a store (dense or quantized), an optional eviction policy, and per-row books.

A row's tokens occupy slots 0..fill-1. Without eviction a slot is the token's position; with eviction,
a compaction (outside the captured decode step) moves the kept slots to the front in their old order,
so slots and positions part ways (keys carry RoPE already, so attention does not care).

Per decode step the host hands the step three [G] tensors (`Where`): the slot each row writes (its
fill), where its query goes in the policy's query ring (or the spare entry for tokens the policy
must not see, such as a budget checkpoint's answer), and its position (only for `track_positions`, a
test aid); the model adds the rows' lengths after the write, slots + 1 (or None: `decode_op`
computes them). After the step `advance` moves the books and compacts rows that reached
budget + buffer. A budget checkpoint's answer is written past the fill and undone by `end_answer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .kvstore import dynamic_slots
from .policies import EvictionPolicy


class Where(NamedTuple):
    """Where each row's token of one decode step goes, each [G]."""

    slots: torch.Tensor  # the slot it writes: the row's fill
    qslots: torch.Tensor  # its entry in the policy's query ring (the spare one: not recorded)
    positions: torch.Tensor  # its position (stored only with `track_positions`)
    lengths: torch.Tensor | None = None  # slots + 1, when computed once per step; None: decode_op does


class CacheLayer(NamedTuple):
    """What `KVCache.decode_op` needs of one layer."""

    store_op: Callable  # the store's decode_op
    store: tuple  # the store's buffers of the layer (kvstore.DenseLayer or QuantLayer)
    queries: torch.Tensor | None  # [G, H, window + 1, D], the policy's query ring
    positions: torch.Tensor | None  # [G, H_kv, C] (track_positions)
    rows: torch.Tensor  # [G]: 0..G-1


class KVCache:
    def __init__(
        self,
        store,
        layers: int,
        heads: int,
        head_dim: int,
        scale: float,
        policy: EvictionPolicy | None = None,
        track_positions: bool = False,
    ) -> None:
        """`store`: a DenseStore or QuantStore of G rows. With a policy, the cache also holds per layer
        the newest `policy.window` queries of each row [G, H, window + 1, D] (the last entry is the
        spare) and, for accumulating policies, a running score per slot [G, H_kv, C] (fp32)."""
        self.store, self.policy, self.scale = store, policy, scale
        g, device = store.rows.shape[0], store.rows.device
        kv_heads, capacity = store.kv_heads, store.capacity
        self.capacity, self.rows = capacity, store.rows
        self.fill, self.seen, self.pending = [0] * g, [0] * g, [0] * g
        window = policy.window if policy else 0
        self.queries = [
            torch.zeros(g, heads, window + 1, head_dim, dtype=store.dtype, device=device) for _ in range(layers)
        ] if window else None  # fmt: skip
        self.state = [
            torch.zeros(g, kv_heads, capacity, dtype=torch.float32, device=device) for _ in range(layers)
        ] if policy and policy.accumulates else None  # fmt: skip
        self.positions = [
            torch.full((g, kv_heads, capacity), -1, dtype=torch.int32, device=device) for _ in range(layers)
        ] if track_positions else None  # fmt: skip
        dynamic_slots(self.positions or [])
        self.layers = layers

    @property
    def nbytes(self) -> int:
        """Bytes of the store and the policy's state (not of the test-only position map)."""
        extra = (self.queries or []) + (self.state or [])
        return self.store.nbytes + sum(t.numel() * t.element_size() for t in extra)

    @property
    def limit(self) -> int:
        """The most slots a row fills while thinking (compaction keeps it below)."""
        return self.policy.budget + self.policy.buffer if self.policy else self.capacity

    # --- prefill: one prompt into every row --------------------------------------------------------
    def prefill_chunk(self, prompt_tokens: int, default: int) -> int:
        """Chunk length for a prompt: `buffer` tokens at a time where it will be compacted, or where the
        policy must see every query (H2O)."""
        if self.policy and (prompt_tokens > self.policy.budget or self.policy.accumulates):
            return min(default, self.policy.buffer)
        return default

    def before_chunk(self, tokens: int, rows: slice) -> None:
        """Before a prompt chunk of `tokens` goes into `rows` (one prompt's rows, equal so far)."""
        members = list(range(len(self.fill)))[rows]
        fill = self.fill[members[0]]
        if tokens > self.capacity - fill:
            if self.policy is None or fill <= self.policy.budget:
                raise ValueError(f"{fill + tokens} tokens exceed the cache capacity {self.capacity}")
            self._compact(members)

    def prefill(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        position: int,
        scale: float,
        rows: slice,
    ) -> torch.Tensor:
        """Write k, v [1, H_kv, S, D] at the next slots of `rows`; causal attention of q [1, H, S, D]
        over their slots -> [1, H, S, D]. `position` is the chunk's first position."""
        first = rows.start or 0
        slot, s = self.fill[first], k.shape[2]
        keys, values = self.store.prefill_kv(layer, k, v, slot, rows)
        if self.queries is not None:
            window = self.queries[layer].shape[2] - 1
            ring = (self.seen[first] + torch.arange(s, device=q.device))[-window:] % window
            block = self.queries[layer][rows]  # a view
            block[:, :, ring] = q[:, :, -window:]
        if self.positions is not None:
            span = torch.arange(position, position + s, device=q.device).int()
            self.positions[layer][rows, :, slot : slot + s] = span
        mask = torch.ones(s, slot + s, dtype=torch.bool, device=q.device).tril(diagonal=slot)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)

    def after_chunk(self, tokens: int, rows: slice) -> None:
        members = list(range(len(self.fill)))[rows]
        self.advance(members, members, tokens)

    def start_at(self, tokens: int) -> None:
        """Books of rows that hold `tokens` slots of whatever the buffers hold: a rehearsal on random
        weights (sweep/estimate.py) starts there instead of prefilling."""
        if tokens > self.limit:
            raise ValueError(f"{tokens} tokens exceed the {self.limit} a row holds")
        g = len(self.fill)
        self.fill, self.seen, self.pending = [tokens] * g, [tokens] * g, [0] * g

    # --- decode: one token per row -----------------------------------------------------------------
    def where(self, record: list[bool]) -> tuple[list[int], list[int]]:
        """Host-side inputs of a step besides the positions: (slots, query-ring entries), each a list
        of G ints; rows with `record` off write their query into the spare entry."""
        if self.queries is None:
            return list(self.fill), [0] * len(record)
        window = self.queries[0].shape[2] - 1
        return list(self.fill), [
            s % window if on else window for s, on in zip(self.seen, record, strict=True)
        ]

    def layer_buffers(self, layer: int) -> CacheLayer:
        """What `decode_op` needs of one layer."""
        queries = None if self.queries is None else self.queries[layer]
        positions = None if self.positions is None else self.positions[layer]
        return CacheLayer(
            self.store.decode_op, self.store.layer_buffers(layer), queries, positions, self.rows
        )

    @staticmethod
    def decode_op(layer: CacheLayer, q, k, v, where: Where, scale: float) -> torch.Tensor:
        """Record the query, write k, v [G, H_kv, 1, D] at the rows' slots and attend q [G, H, 1, D]
        over each row's slots -> [G, H, 1, D]. Pure tensors in and out: it compiles into the layer."""
        lengths = where.slots + 1 if where.lengths is None else where.lengths
        if layer.queries is not None:
            layer.queries[layer.rows, :, where.qslots] = q[:, :, 0]
        if layer.positions is not None:
            layer.positions[layer.rows, :, where.slots] = where.positions[:, None].int()
        return layer.store_op(layer.store, q, k, v, where.slots, lengths, scale)

    def advance(self, live: list[int], record: list[int], count: int = 1) -> None:
        """After a step (count 1) or a prompt chunk: `live` rows wrote `count` tokens, `record` rows
        (a subset) as part of their main trajectory. Updates policy scores and compacts full rows."""
        for i in live:
            self.fill[i] += count
        for i in record:
            self.seen[i] += count
            self.pending[i] += count
        if self.policy is None:
            return
        if self.policy.accumulates:
            self._accumulate([i for i in record if self.pending[i] >= self.policy.window])
        self._compact([i for i in record if self.fill[i] >= self.limit])

    # --- budget checkpoints ------------------------------------------------------------------------
    def begin_answer(self, rows: list[int], count: int):
        """Before `count` answer tokens of `rows` are written past their fill (not recorded)."""
        if any(self.fill[i] + count > self.capacity for i in rows):
            raise ValueError("the cache has no room for the answer: allocate it with the answer slots")
        return [self.fill[i] for i in rows], self.store.save_answer(rows, [self.fill[i] for i in rows], count)

    def end_answer(self, rows: list[int], saved) -> None:
        """Roll `rows` back to where `begin_answer` found them."""
        fills, store_saved = saved
        for i, fill in zip(rows, fills, strict=True):
            self.fill[i] = fill
        self.store.restore_answer(store_saved)

    # --- policy work (outside the captured step) ---------------------------------------------------
    def _groups(self, rows: list[int]) -> list[tuple[tuple[int, int, int], list[int], torch.Tensor | slice]]:
        """Rows by (fill, seen, pending), which fix the slots of their recorded queries; each group
        with its index (a slice when it is every row: views instead of copies)."""
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i in rows:
            groups.setdefault((self.fill[i], self.seen[i], self.pending[i]), []).append(i)
        every = len(self.fill)
        return [
            (key, r, slice(None) if len(r) == every else torch.tensor(r, device=self.rows.device))
            for key, r in groups.items()
        ]

    def _recent_queries(self, layer: int, rows, seen: int, count: int) -> torch.Tensor:
        """The newest `count` recorded queries of `rows`, oldest first: [R, H, count, D]."""
        window = self.queries[layer].shape[2] - 1
        ring = torch.arange(seen - count, seen, device=self.rows.device) % window
        return self.queries[layer][rows][:, :, ring]

    def _accumulate_layer(self, layer: int, index, keys: torch.Tensor, seen: int, pending: int) -> None:
        """Add the attention of the `pending` newest recorded queries to the running scores."""
        fill = keys.shape[2]
        state = self.state[layer][index, :, :fill]
        self.policy.accumulate(state, keys, self._recent_queries(layer, index, seen, pending), self.scale)
        self.state[layer][index, :, :fill] = state

    def _accumulate(self, rows: list[int]) -> None:
        for (fill, seen, pending), members, index in self._groups(rows):
            if pending == 0:
                continue
            for layer in range(self.layers):
                self._accumulate_layer(layer, index, self.store.read_keys(layer, index, fill), seen, pending)
            for i in members:
                self.pending[i] = 0

    def _compact(self, rows: list[int]) -> None:
        """Keep `policy.budget` slots of every layer and KV head of `rows` (reading each layer's keys
        once: pending H2O queries are added to the scores first)."""
        for (fill, seen, pending), members, index in self._groups(rows):
            if fill <= self.policy.budget:
                continue
            for layer in range(self.layers):
                keys = self.store.read_keys(layer, index, fill)
                queries = state = None
                if self.policy.accumulates:
                    if pending:
                        self._accumulate_layer(layer, index, keys, seen, pending)
                    state = self.state[layer][index, :, :fill]
                elif self.queries is not None:
                    queries = self._recent_queries(layer, index, seen, min(self.policy.window, seen))
                keep = self.policy.select(self.policy.score(keys, queries, state, self.scale))  # [R, H_kv, B]
                self.store.keep(layer, index, keep, fill)
                for extra in (self.state, self.positions):
                    if extra is not None:
                        kept = extra[layer][index].gather(2, keep.to(torch.int64))
                        block = torch.full_like(extra[layer][index], 0 if extra is self.state else -1)
                        block[:, :, : keep.shape[-1]] = kept
                        extra[layer][index] = block
            for i in members:
                self.fill[i] = self.policy.budget
                self.pending[i] = 0

"""The decode step (forward + sampling) on static buffers, replayed from a CUDA graph on GPU.

Inputs live in preallocated device tensors (`ids`, `positions`); the step writes its sampled tokens
into `next_ids`. On CUDA the whole step is captured once per (model, batch, cache) and replayed, so
a step costs no Python or launch overhead; elsewhere it simply runs eagerly.
"""

from __future__ import annotations

import torch

from .cache import KVCache, Where
from .compiling import compiled
from .model import Decoder
from .sampling import SamplingParams, sample


class DecodeStep:
    """Static-shape decode step for G rows. `run(ids, positions)` -> next tokens [G] (device tensor).

    Sampled positions are `positions + 1`: feeding the token at position p predicts position p + 1.
    """

    def __init__(
        self,
        model: Decoder,
        cache: KVCache,
        params: SamplingParams,
        seeds: list[int],
        use_graph: bool | None = None,
    ) -> None:
        rows, device = len(seeds), model.device
        self.model, self.cache, self.params = model, cache, params
        self.ids = torch.zeros(rows, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)
        self.slots = torch.zeros(rows, dtype=torch.long, device=device)
        self.qslots = torch.zeros(rows, dtype=torch.long, device=device)
        self.seeds = torch.tensor(seeds, dtype=torch.long, device=device)
        self.next_ids = torch.zeros(rows, dtype=torch.long, device=device)
        self.graph = None
        self.sample = compiled(sample) if device.type == "cuda" else sample
        if use_graph is None:
            use_graph = device.type == "cuda"
        if use_graph:
            self._capture()

    def _body(self) -> None:
        where = Where(self.slots, self.qslots, self.positions)
        logits = self.model.decode(self.ids, self.positions, self.cache, where)  # [G, V]
        self.next_ids.copy_(self.sample(logits, self.params, self.seeds, self.positions + 1))

    def _capture(self) -> None:
        # compile and warm up (lazy inits, Triton compiles) at slot 0, then capture -- warm-up and
        # capture run on the GPU's one capture stream (Decoder.capture_stream), so however many steps
        # and models a process builds, only two streams ever hold a cuBLAS workspace
        self._body()
        stream = self.model.capture_stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._body()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream):
            self._body()

    def run(self, ids: torch.Tensor, positions: torch.Tensor, slots=None, qslots=None) -> torch.Tensor:
        """ids, positions [G] (any device), and the cache's slots and query-ring entries [G] (default:
        slots = positions, as without eviction) -> sampled next tokens [G] on the model's device."""
        self.ids.copy_(ids, non_blocking=True)
        self.positions.copy_(positions, non_blocking=True)
        self.slots.copy_(positions if slots is None else slots, non_blocking=True)
        self.qslots.copy_(positions if qslots is None else qslots, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()
        return self.next_ids

"""The slotted KV cache: preallocated per-layer buffers, one row per sample, attention over each row.

This is the seam for KV policies: an eviction policy or quantized storage replaces this class (same
methods), not the engine. Keys are stored with RoPE already applied, so a row's physical slots need not
equal its logical positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import decode_attention


class KVCache:
    """Per layer: k and v of shape [G, H_kv, capacity, D]. `rows` is a static arange(G) for indexing."""

    def __init__(
        self,
        layers: int,
        rows: int,
        kv_heads: int,
        capacity: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (rows, kv_heads, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows = torch.arange(rows, device=device)
        self.capacity = capacity

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    # --- prefill: one sequence (batch 1) written into every row ---------------------------------
    def prefill(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, scale: float
    ) -> torch.Tensor:
        """Write k, v [1, H_kv, S, D] at slots start.. of every row; causal attention of q [1, H, S, D]
        over slots [0, start + S) of row 0. Returns [1, H, S, D]."""
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"prompt of {end} tokens exceeds the cache capacity {self.capacity}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        keys, values = self.k[layer][:1, :, :end], self.v[layer][:1, :, :end]
        s = k.shape[2]
        mask = torch.ones(s, end, dtype=torch.bool, device=q.device).tril(diagonal=start)  # [S, end]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)

    # --- decode: one new token per row -----------------------------------------------------------
    def layer_buffers(self, layer: int) -> tuple:
        """What `decode_op` needs of one layer: (k [G, H_kv, C, D], v [G, H_kv, C, D], rows [G])."""
        return self.k[layer], self.v[layer], self.rows

    @staticmethod
    def decode_op(
        buffers: tuple, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Write k, v [G, H_kv, 1, D] at `slots` [G]; attend q [G, H, 1, D] over slots [0, slot] of each
        row. Returns [G, H, 1, D]. A pure function of tensors, so it compiles into the decode layer."""
        k_buf, v_buf, rows = buffers
        k_buf[rows, :, slots] = k[:, :, 0]
        v_buf[rows, :, slots] = v[:, :, 0]
        return decode_attention(q, k_buf, v_buf, slots + 1, scale)

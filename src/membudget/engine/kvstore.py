"""Where a cache keeps its keys and values: dense 16-bit slots, or packed integer codes.

Both stores hold, per layer, G rows x H_kv heads x C slots and offer the same operations:
  * `prefill_kv` writes a prompt chunk into every row and returns the keys/values it attends over;
  * `decode_op` (pure, compiled into the decode layer) writes one token per row and attends;
  * `read` returns dense keys/values of some rows (for eviction scores; transient, one layer);
  * `keep` compacts chosen slots to the front (eviction);
  * `save_answer` / `restore_answer` protect what an answer phase overwrites (budget checkpoints).
Keys are stored with RoPE applied, so a slot need not equal a position. A store's `tickets` (int32
zeros [G * H_kv] shared by its layers, or None) let the CUDA attention kernel merge its splits itself:
its programs count finished splits there and the last one merges (engine/kernels/attention.py). On an
H200 that made the 8-bit kernel about 4 % faster and the 16-bit and 4-bit steps 2-5 % slower, so
only an 8-bit QuantStore has tickets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .attention import decode_attention
from .kvquant import (
    RESIDUAL,
    check_head_dim,
    dequantize,
    fast_kernel_applies,
    group_slots,
    quant_decode_attention_reference,
    quantize,
    slot_major,
)


class DenseLayer(NamedTuple):
    """A dense store's buffers of one layer, as its decode_op takes them."""

    k: torch.Tensor  # [G, H_kv, C, D]
    v: torch.Tensor  # [G, H_kv, C, D]
    rows: torch.Tensor  # [G]: 0..G-1
    tickets: torch.Tensor | None  # see the module docstring


class QuantLayer(NamedTuple):
    """A quantized store's buffers of one layer (shapes: engine/kvquant.py), as its decode_op takes them."""

    kc: torch.Tensor  # key codes
    ks: torch.Tensor  # key scales
    kz: torch.Tensor  # key zeros
    vc: torch.Tensor  # value codes
    vs: torch.Tensor
    vz: torch.Tensor
    kr: torch.Tensor  # [G, H_kv, RESIDUAL, D]: the newest keys, exact
    vr: torch.Tensor
    rows: torch.Tensor  # [G]: 0..G-1
    tickets: torch.Tensor | None
    bits: int


def dynamic_slots(tensors: list[torch.Tensor]) -> None:
    """Mark the slot dimension (2) of cache buffers dynamic for torch.compile, so that one compiled
    decode layer serves every cache capacity (a sweep's prompts differ in length) instead of one
    compile per capacity."""
    for t in tensors:
        if t.shape[2] > 1:
            torch._dynamo.mark_dynamic(t, 2)


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """t [R, H_kv, C, X], index [R, H_kv, B] -> t at those slots [R, H_kv, B, X]."""
    return t.gather(2, index[..., None].expand(-1, -1, -1, t.shape[-1]))


def _compact(buf: torch.Tensor, rows, index: torch.Tensor, end: int, all_rows: torch.Tensor) -> None:
    """Move slots `index` [R, H_kv, B] (ascending) of `rows` (a slice or row ids) of buf [G, H_kv, C, X]
    (or grouped, [G, H_kv, C/4, X, 4]) to slots 0..B-1: in place in one pass on CUDA
    (engine/kernels/compact.py), by a gather elsewhere."""
    if buf.is_cuda:
        from .kernels.compact import compact_

        compact_(buf, all_rows[rows], index.contiguous())
    elif buf.dim() == 5:  # grouped value codes (a test's choice on the CPU): through the slot-major form
        block = slot_major(buf[rows])
        block[:, :, : index.shape[-1]] = _gather(block[:, :, :end], index)
        buf[rows] = group_slots(block)
    else:
        buf[rows, :, : index.shape[-1]] = _gather(buf[rows, :, :end], index)


class DenseStore:
    """k and v [G, H_kv, C, D] per layer in the model's dtype."""

    def __init__(self, layers, rows, kv_heads, capacity, head_dim, dtype, device) -> None:
        shape = (rows, kv_heads, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows = torch.arange(rows, device=device)
        self.tickets = None  # the separate merge kernel (see the module docstring)
        self.capacity, self.kv_heads, self.dtype = capacity, kv_heads, dtype
        dynamic_slots(self.k + self.v)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def prefill_kv(self, layer: int, k: torch.Tensor, v: torch.Tensor, slot: int, rows: slice):
        """Write k, v [1, H_kv, S, D] at slots slot.. of `rows` (one prompt's rows) -> the first row's
        keys, values [1, H_kv, slot + S, D] (the earlier slots and the chunk)."""
        end = slot + k.shape[2]
        self.k[layer][rows, :, slot:end] = k
        self.v[layer][rows, :, slot:end] = v
        first = slice(rows.start or 0, (rows.start or 0) + 1)
        return self.k[layer][first, :, :end], self.v[layer][first, :, :end]

    def read(self, layer: int, rows: torch.Tensor, end: int):
        """Dense keys, values [R, H_kv, end, D] of `rows` [R]."""
        return self.k[layer][rows, :, :end], self.v[layer][rows, :, :end]

    def read_keys(self, layer: int, rows: torch.Tensor, end: int) -> torch.Tensor:
        return self.k[layer][rows, :, :end]

    def layer_buffers(self, layer: int) -> DenseLayer:
        return DenseLayer(self.k[layer], self.v[layer], self.rows, self.tickets)

    @staticmethod
    def decode_op(layer: DenseLayer, q, k, v, slots, lengths, scale: float) -> torch.Tensor:
        """Write k, v [G, H_kv, 1, D] at `slots` [G]; attend q [G, H, 1, D] over the first `lengths`
        [G] (= slots + 1) slots of each row -> [G, H, 1, D]."""
        layer.k[layer.rows, :, slots] = k[:, :, 0]
        layer.v[layer.rows, :, slots] = v[:, :, 0]
        return decode_attention(q, layer.k, layer.v, lengths, scale, layer.tickets)

    def keep(self, layer: int, rows: torch.Tensor, index: torch.Tensor, end: int) -> None:
        """Move slots `index` [R, H_kv, B] (sorted) of `rows` to slots 0..B-1."""
        for buf in (self.k[layer], self.v[layer]):
            _compact(buf, rows, index, end, self.rows)

    def save_answer(self, rows: list[int], starts: list[int], count: int):
        return None  # answer tokens land in slots past the row's fill, which nothing else reads

    def restore_answer(self, saved) -> None:
        pass


def grouped_values(device, bits: int, capacity: int, head_dim: int, dtype, heads: int, kv_heads: int) -> bool:
    """Whether a quantized store keeps its value codes grouped by 4 slots (engine/kvquant.py): 4-bit
    CUDA caches that the scale-after-dot kernel takes, which reads them that way 12-20 % faster."""
    return (
        torch.device(device).type == "cuda"
        and bits == 4
        and capacity % 4 == 0
        and fast_kernel_applies(bits, head_dim, heads, kv_heads, dtype)
    )


class QuantStore:
    """Codes, scales and zeros per layer (see kvquant), plus the newest RESIDUAL tokens of each row
    exact in a 16-bit ring: slot s lives at ring index s % RESIDUAL. Attention reads the ring for the
    newest RESIDUAL slots of a row and the codes for all older ones (every token is quantized on
    write, so nothing is flushed later). `grouped` (default: `grouped_values`): value codes in the
    4-slot grouped layout [G, H_kv, C/4, B, 4], else slot-major [G, H_kv, C, B] like the key codes."""

    def __init__(
        self, layers, rows, kv_heads, capacity, head_dim, dtype, device, bits: int, heads=None, grouped=None
    ) -> None:
        check_head_dim(head_dim)
        self.bits, self.dtype, self.kv_heads = bits, dtype, kv_heads
        if grouped is None:
            grouped = grouped_values(device, bits, capacity, head_dim, dtype, heads or kv_heads, kv_heads)
        if grouped and capacity % 4:
            raise ValueError(f"grouped value codes need a capacity that is a multiple of 4, not {capacity}")
        self.grouped = grouped

        def make(width, kind, grouped=False):
            shape = (
                (rows, kv_heads, capacity // 4, width, 4) if grouped else (rows, kv_heads, capacity, width)
            )
            return [torch.zeros(shape, dtype=kind, device=device) for _ in range(layers)]

        codes, groups = head_dim * bits // 8, head_dim // 64
        self.kc, self.vc = make(codes, torch.uint8), make(codes, torch.uint8, grouped)
        self.ks, self.kz = make(groups, torch.float16), make(groups, torch.float16)
        self.vs, self.vz = make(groups, torch.float16), make(groups, torch.float16)
        ring = (rows, kv_heads, min(capacity, RESIDUAL), head_dim)  # slot s at s % RESIDUAL
        self.kr = [torch.zeros(ring, dtype=dtype, device=device) for _ in range(layers)]
        self.vr = [torch.zeros(ring, dtype=dtype, device=device) for _ in range(layers)]
        self.rows = torch.arange(rows, device=device)
        self.tickets = (  # (see the module docstring)
            torch.zeros(rows * kv_heads, dtype=torch.int32, device=device) if bits == 8 else None
        )
        self.capacity = capacity
        dynamic_slots(self.kc + self.vc + self.ks + self.kz + self.vs + self.vz + self.kr + self.vr)

    @property
    def nbytes(self) -> int:
        tensors = self.kc + self.vc + self.ks + self.kz + self.vs + self.vz + self.kr + self.vr
        return sum(t.numel() * t.element_size() for t in tensors)

    def prefill_kv(self, layer: int, k: torch.Tensor, v: torch.Tensor, slot: int, rows: slice):
        """As DenseStore.prefill_kv; earlier slots come back as attention sees them (dequantized, or
        exact from the ring), the chunk itself exact."""
        old_k, old_v = self.read(layer, self.rows[rows][:1], slot)
        s = k.shape[2]
        slots = torch.arange(slot, slot + s, device=k.device)
        tail = slots[-RESIDUAL:]  # only the newest RESIDUAL of the chunk can be in the ring
        for x, codes, scale, zero, ring in (
            (k, self.kc, self.ks, self.kz, self.kr),
            (v, self.vc, self.vs, self.vz, self.vr),
        ):
            c, sc, z = quantize(x, self.bits)  # [1, H_kv, S, *]
            if codes[layer].dim() == 5:  # grouped: slot n at [n // 4, :, n % 4]
                codes[layer][rows, :, slots // 4, :, slots % 4] = c[0].transpose(0, 1)[:, None]
            else:
                codes[layer][rows, :, slot : slot + s] = c
            scale[layer][rows, :, slot : slot + s] = sc
            zero[layer][rows, :, slot : slot + s] = z
            block = ring[layer][rows]
            block[:, :, tail % RESIDUAL] = x[:, :, -tail.shape[0] :]
        return torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)

    def read(self, layer: int, rows: torch.Tensor, end: int, values: bool = True):
        """Dense keys, values [R, H_kv, end, D] of `rows` [R] as attention sees them."""
        out = []
        for codes, scale, zero, ring in (
            (self.kc, self.ks, self.kz, self.kr),
            (self.vc, self.vs, self.vz, self.vr),
        )[: 2 if values else 1]:
            c = codes[layer]
            c = slot_major(c[rows, :, : -(-end // 4)])[:, :, :end] if c.dim() == 5 else c[rows, :, :end]
            x = dequantize(
                c,
                scale[layer][rows, :, :end],
                zero[layer][rows, :, :end],
                self.bits,
                self.dtype,
            )
            recent = torch.arange(max(0, end - RESIDUAL), end, device=x.device)
            x[:, :, recent] = ring[layer][rows][:, :, recent % RESIDUAL]
            out.append(x)
        return (out[0], out[1]) if values else (out[0], None)

    def read_keys(self, layer: int, rows: torch.Tensor, end: int) -> torch.Tensor:
        return self.read(layer, rows, end, values=False)[0]

    def layer_buffers(self, layer: int) -> QuantLayer:
        return QuantLayer(
            self.kc[layer], self.ks[layer], self.kz[layer],
            self.vc[layer], self.vs[layer], self.vz[layer],
            self.kr[layer], self.vr[layer], self.rows, self.tickets, self.bits,
        )  # fmt: skip

    @staticmethod
    def decode_op(layer: QuantLayer, q, k, v, slots, lengths, scale: float) -> torch.Tensor:
        """As DenseStore.decode_op: quantize the new k, v into the codes and the ring, then attend over
        the codes without a 16-bit copy of them (Triton on CUDA, chunked reference elsewhere)."""
        kc, ks, kz, vc, vs, vz, kr, vr, rows, tickets, bits = layer
        store = (kc, ks, kz, vc, vs, vz, kr, vr, bits)
        if q.is_cuda:  # the exact ring entry here, the codes inside the Triton kernels
            from .kernels.quant_attention import split_kv_decode_quant

            kr[rows, :, slots % RESIDUAL], vr[rows, :, slots % RESIDUAL] = k[:, :, 0], v[:, :, 0]
            new = (k[:, :, 0], v[:, :, 0])
            return split_kv_decode_quant(q, store, lengths, scale, new=new, tickets=tickets)
        for x, codes, scale_, zero, ring in ((k, kc, ks, kz, kr), (v, vc, vs, vz, vr)):
            c, s, z = quantize(x[:, :, 0], bits)
            if codes.dim() == 5:  # grouped (a test's choice on the CPU)
                codes[rows[:, None], :, (slots // 4)[:, None], :, (slots % 4)[:, None]] = c[:, None]
            else:
                codes[rows, :, slots] = c
            scale_[rows, :, slots], zero[rows, :, slots] = s, z
            ring[rows, :, slots % RESIDUAL] = x[:, :, 0]
        return quant_decode_attention_reference(q, store, lengths, scale)

    def keep(self, layer: int, rows: torch.Tensor, index: torch.Tensor, end: int) -> None:
        """As DenseStore.keep. The ring is rebuilt for the new newest RESIDUAL slots: a kept token that
        was in the old ring keeps its exact value, an older one gets its dequantized value (which is
        what attention saw for it before)."""
        b = index.shape[-1]
        keys, values = self.read(layer, rows, end)  # exact where the old ring covered
        recent = torch.arange(max(0, b - RESIDUAL), b, device=index.device)
        for dense, ring in ((keys, self.kr), (values, self.vr)):
            kept = _gather(dense, index[:, :, recent])  # [R, H_kv, n, D]
            block = ring[layer][rows]
            block[:, :, recent % RESIDUAL] = kept
            ring[layer][rows] = block
        for t in (self.kc, self.ks, self.kz, self.vc, self.vs, self.vz):
            _compact(t[layer], rows, index, end, self.rows)

    def save_answer(self, rows: list[int], starts: list[int], count: int):
        """The ring entries that `count` answer tokens written from slot starts[i] of rows[i] will
        overwrite (the codes they overwrite lie past the row's fill)."""
        index = torch.tensor([[(s + j) % RESIDUAL for j in range(min(count, RESIDUAL))] for s in starts])
        r = torch.tensor(rows)[:, None]
        index, r = index.to(self.rows.device), r.to(self.rows.device)
        saved = [
            (ring, layer, ring[layer][r, :, index].clone())
            for ring in (self.kr, self.vr)
            for layer in range(len(ring))
        ]
        return r, index, saved

    def restore_answer(self, saved) -> None:
        r, index, entries = saved
        for ring, layer, values in entries:
            ring[layer][r, :, index] = values

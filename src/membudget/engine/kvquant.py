"""Packed KV quantization (group 64 along head_dim, 16-bit scale and zero) and its reference attention.

Layout of one quantized vector x [D] at Q bits (Q in 2, 4, 8):
  * codes: D * Q / 8 bytes (uint8); element i sits in byte i // (8 / Q) at bit (i % (8 / Q)) * Q;
  * scale, zero: fp16, one each per group of 64 elements; x ~ code * scale + zero (zero = group min).
So a token costs Q/8 + 32/(8*64) bytes per element, the figure `memory.kv_bytes` accounts.

Slot order of a cache's codes [..., C, B] (B bytes per slot): slot-major, or for the value codes of a
4-bit CUDA cache "grouped" [..., C/4, B, 4]: byte b of slot n at [n // 4, b, n % 4], so one 32-bit
word holds a byte column of 4 consecutive slots -- what the attention kernel's value product reduces
over (engine/kernels/quant_attention.py; same bytes, `group_slots` / `slot_major` convert).
"""

from __future__ import annotations

import torch

GROUP = 64
RESIDUAL = 128  # the newest tokens of a row, kept exact in a 16-bit ring beside the codes


def group_slots(codes: torch.Tensor) -> torch.Tensor:
    """Slot-major codes [..., C, B] (C % 4 == 0) -> the grouped layout [..., C/4, B, 4] (a copy)."""
    *lead, c, b = codes.shape
    return codes.reshape(*lead, c // 4, 4, b).transpose(-1, -2).contiguous()


def slot_major(grouped: torch.Tensor) -> torch.Tensor:
    """The inverse of `group_slots`: [..., C/4, B, 4] -> [..., C, B] (a copy)."""
    *lead, c4, b, four = grouped.shape
    return grouped.transpose(-1, -2).reshape(*lead, c4 * four, b)


def fast_kernel_applies(bits: int, head_dim: int, heads: int, kv_heads: int, dtype: torch.dtype) -> bool:
    """Whether the CUDA attention that applies scales to dot products (engine/kernels/quant_attention.py)
    takes this cache: 8 or 4 bits, head_dim 64 or 128, <= 8 query heads per KV head, 16-bit queries."""
    return bits in (8, 4) and head_dim in (64, 128) and heads <= 8 * kv_heads and dtype != torch.float32


def check_head_dim(head_dim: int) -> None:
    if head_dim % GROUP:
        raise ValueError(
            f"KV quantization groups {GROUP} elements of a head; this model's head_dim {head_dim} is not "
            f"a multiple of {GROUP}: use an eviction policy or the full cache"
        )


def quantize(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [..., D] -> codes uint8 [..., D*bits/8], scale and zero fp16 [..., D/64]."""
    *lead, d = x.shape
    groups = x.float().reshape(*lead, d // GROUP, GROUP)
    lo, hi = groups.amin(-1), groups.amax(-1)
    levels = 2**bits - 1
    scale, zero = ((hi - lo) / levels).half(), lo.half()
    step = scale.float()
    step = torch.where(step > 0, step, torch.ones_like(step))  # a constant group: every code 0
    codes = ((groups - zero.float()[..., None]) / step[..., None]).round_().clamp_(0, levels)
    return pack(codes.to(torch.uint8).reshape(*lead, d), bits), scale, zero


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """codes uint8 [..., D] (each < 2**bits) -> bytes [..., D*bits/8]."""
    per_byte = 8 // bits
    parts = codes.reshape(*codes.shape[:-1], -1, per_byte)
    out = parts[..., 0].clone()
    for i in range(1, per_byte):
        out |= parts[..., i] << (bits * i)
    return out


def unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """bytes [..., D*bits/8] -> codes uint8 [..., D]."""
    per_byte = 8 // bits
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    codes = (packed[..., None] >> shifts) & (2**bits - 1)
    return codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte)


def _codes_float(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """bytes [..., D*bits/8] -> codes as fp32 [..., D] (each part written into a preallocated
    output: measured ~2.5x faster on a CPU than broadcast shifts)."""
    if bits == 8:
        return codes.float()
    per_byte = 8 // bits
    out = torch.empty(*codes.shape, per_byte, dtype=torch.float32, device=codes.device)
    for j in range(per_byte):
        out[..., j] = (codes >> (bits * j)) & (2**bits - 1)
    return out.reshape(*codes.shape[:-1], codes.shape[-1] * per_byte)


def dequantize(
    codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, dtype: torch.dtype
) -> torch.Tensor:
    """The inverse of `quantize`: [..., D*bits/8] codes with [..., D/64] scale/zero -> [..., D] in dtype."""
    q = _codes_float(codes, bits)
    *lead, d = q.shape
    x = q.view(*lead, d // GROUP, GROUP)
    x.mul_(scale.float()[..., None]).add_(zero.float()[..., None])
    return x.view(*lead, d).to(dtype)


def quant_decode_attention_reference(
    q: torch.Tensor, store: tuple, lengths: torch.Tensor, scale: float, chunk: int = 1024
) -> torch.Tensor:
    """Decode attention over a quantized cache, dequantizing `chunk` slots at a time (never the whole
    cache), with an online softmax across chunks; slots within the newest RESIDUAL of a row read the
    exact 16-bit ring instead of the codes.

    q [G, H, 1, D]; store = (k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, k_ring, v_ring, bits)
    with codes [G, H_kv, C, D*bits/8] (value codes also grouped, [G, H_kv, C/4, D*bits/8, 4]),
    scale/zero [G, H_kv, C, D/64], rings [G, H_kv, RESIDUAL, D]; lengths [G] valid slots per row ->
    [G, H, 1, D].
    """
    kc, ks, kz, vc, vs, vz, kr, vr, bits = store
    if vc.dim() == 5:
        vc = slot_major(vc)
    g, heads, _, d = q.shape
    kv_heads, capacity = kc.shape[1], kc.shape[2]
    qg = q.float().reshape(g, kv_heads, heads // kv_heads, d)  # [G, H_kv, rep, D]
    m = torch.full((g, kv_heads, heads // kv_heads), float("-inf"), device=q.device)
    total = torch.zeros_like(m)
    acc = torch.zeros_like(qg)
    end = int(lengths.max())
    for start in range(0, min(end, capacity), chunk):
        stop = min(start + chunk, end, capacity)
        slots = torch.arange(start, stop, device=q.device)
        k = dequantize(kc[:, :, start:stop], ks[:, :, start:stop], kz[:, :, start:stop], bits, torch.float32)
        v = dequantize(vc[:, :, start:stop], vs[:, :, start:stop], vz[:, :, start:stop], bits, torch.float32)
        for length in lengths.unique().tolist():  # the newest RESIDUAL slots of rows this long: exact
            lo, hi = max(start, length - RESIDUAL), min(stop, length)
            if lo < hi:
                every = bool((lengths == length).all())
                rows = slice(None) if every else (lengths == length).nonzero()[:, 0]
                a, n = lo % RESIDUAL, hi - lo
                first = min(n, RESIDUAL - a)  # the ring wraps at most once
                for out, exact in ((k, kr), (v, vr)):
                    exact = exact if every else exact.index_select(0, rows)
                    block = out[rows, :, lo - start : hi - start] if not every else None
                    target = block if block is not None else out[:, :, lo - start : hi - start]
                    target[:, :, :first] = exact[:, :, a : a + first]
                    target[:, :, first:] = exact[:, :, : n - first]
                    if block is not None:
                        out[rows, :, lo - start : hi - start] = block
        scores = torch.einsum("ghrd,ghnd->ghrn", qg, k) * scale
        valid = (slots[None, :] < lengths[:, None])[:, None, None, :]  # [G, 1, 1, n]
        scores = scores.masked_fill(~valid, float("-inf"))
        m_new = torch.maximum(m, scores.amax(-1))
        alpha = torch.exp(m - m_new).nan_to_num_(0.0)
        p = torch.exp(scores - m_new[..., None]).nan_to_num_(0.0)
        total = total * alpha + p.sum(-1)
        acc = acc * alpha[..., None] + torch.einsum("ghrn,ghnd->ghrd", p, v)
        m = m_new
    out = acc / total[..., None]
    return out.reshape(g, heads, 1, d).to(q.dtype)

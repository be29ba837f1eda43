"""One readable forward for dense GQA decoders (Llama, Mistral, Qwen2, Qwen3).

Weights are the tensors transformers loaded (no copies); shapes come from the HF config through
ModelSpec. Per layer: RMSNorm -> q/k/v (+bias for Qwen2) -> per-head q/k RMSNorm (Qwen3) -> RoPE ->
cache write + attention -> o_proj -> residual; RMSNorm -> SwiGLU MLP -> residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..spec import ModelSpec
from .cache import KVCache
from .rope import apply_rope, rope_table


@dataclass(slots=True)
class LayerWeights:
    """Weights of one decoder layer; linear weights are [out_features, in_features]."""

    input_norm: torch.Tensor  # [hidden]
    q: torch.Tensor  # [H * D, hidden]
    k: torch.Tensor  # [H_kv * D, hidden]
    v: torch.Tensor  # [H_kv * D, hidden]
    o: torch.Tensor  # [hidden, H * D]
    post_norm: torch.Tensor  # [hidden]
    gate: torch.Tensor  # [inter, hidden]
    up: torch.Tensor  # [inter, hidden]
    down: torch.Tensor  # [hidden, inter]
    q_bias: torch.Tensor | None = None  # [H * D] (Qwen2)
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None
    q_norm: torch.Tensor | None = None  # [D] (Qwen3)
    k_norm: torch.Tensor | None = None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension in fp32, cast back before the weight (as transformers does)."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


class Decoder:
    """The forward pass. `prefill` runs one prompt into every cache row; `decode` one token per row."""

    def __init__(
        self,
        spec: ModelSpec,
        embed: torch.Tensor,
        layers: list[LayerWeights],
        norm: torch.Tensor,
        lm_head: torch.Tensor,
        inv_freq: torch.Tensor,
        rope_scaling: float,
        eps: float,
        max_positions: int,
    ) -> None:
        self.spec = spec
        self.embed, self.layers, self.norm, self.lm_head = embed, layers, norm, lm_head
        self.eps = eps
        self.scale = spec.head_dim**-0.5
        self.dtype, self.device = embed.dtype, embed.device
        self.cos, self.sin = rope_table(inv_freq, rope_scaling, max_positions, self.dtype, self.device)

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, model, spec: ModelSpec) -> Decoder:
        """Reuse the weight tensors of a transformers *ForCausalLM (Llama/Mistral/Qwen2/Qwen3)."""
        body, config = model.model, model.config
        layers = []
        for layer in body.layers:
            attn, mlp = layer.self_attn, layer.mlp
            layers.append(
                LayerWeights(
                    input_norm=layer.input_layernorm.weight.data,
                    q=attn.q_proj.weight.data,
                    k=attn.k_proj.weight.data,
                    v=attn.v_proj.weight.data,
                    o=attn.o_proj.weight.data,
                    post_norm=layer.post_attention_layernorm.weight.data,
                    gate=mlp.gate_proj.weight.data,
                    up=mlp.up_proj.weight.data,
                    down=mlp.down_proj.weight.data,
                    q_bias=_data(attn.q_proj.bias),
                    k_bias=_data(attn.k_proj.bias),
                    v_bias=_data(attn.v_proj.bias),
                    q_norm=_data(getattr(attn, "q_norm", None), "weight"),
                    k_norm=_data(getattr(attn, "k_norm", None), "weight"),
                )
            )
        rotary = body.rotary_emb
        return cls(
            spec,
            body.embed_tokens.weight.data,
            layers,
            body.norm.weight.data,
            model.lm_head.weight.data,
            rotary.inv_freq,
            float(rotary.attention_scaling),
            config.rms_norm_eps,
            config.max_position_embeddings,
        )

    @property
    def weight_bytes(self) -> int:
        """Bytes of all distinct weight tensors (a tied head counts once)."""
        tensors = [self.embed, self.norm, self.lm_head]
        for layer in self.layers:
            tensors += [t for t in vars_of(layer) if t is not None]
        unique = {t.data_ptr(): t for t in tensors}
        return sum(t.numel() * t.element_size() for t in unique.values())

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        if capacity > self.cos.shape[0]:
            raise ValueError(f"{capacity} tokens exceed the model's {self.cos.shape[0]} positions")
        s = self.spec
        return KVCache(s.num_layers, rows, s.num_kv_heads, capacity, s.head_dim, self.dtype, self.device)

    # --- forward -----------------------------------------------------------------------------------
    def _qkv(self, w: LayerWeights, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B, S, hidden] -> q [B, H, S, D], k, v [B, H_kv, S, D], RoPE applied to q and k."""
        b, s, _ = x.shape
        d = self.spec.head_dim
        q = F.linear(x, w.q, w.q_bias).view(b, s, -1, d)
        k = F.linear(x, w.k, w.k_bias).view(b, s, -1, d)
        v = F.linear(x, w.v, w.v_bias).view(b, s, -1, d)
        if w.q_norm is not None:
            q, k = rms_norm(q, w.q_norm, self.eps), rms_norm(k, w.k_norm, self.eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _mlp(self, w: LayerWeights, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.silu(F.linear(x, w.gate)) * F.linear(x, w.up), w.down)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, hidden] -> fp32 logits [B, V]."""
        return F.linear(rms_norm(x, self.norm, self.eps), self.lm_head).float()

    def prefill(self, ids: torch.Tensor, cache: KVCache, chunk: int = 512) -> torch.Tensor:
        """ids [S] of one prompt, written into every cache row in chunks of `chunk` tokens (each chunk
        attends causally to itself and to all earlier slots) -> fp32 logits [V] of the last token."""
        for start in range(0, ids.shape[0], chunk):
            x = self._prefill_chunk(ids[start : start + chunk], cache, start)
        return self._logits(x[0, -1:])[0]

    def _prefill_chunk(self, ids: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """ids [S] at positions start.. -> hidden states [1, S, hidden]."""
        s = ids.shape[0]
        x = F.embedding(ids[None], self.embed)  # [1, S, hidden]
        cos, sin = self.cos[start : start + s][None], self.sin[start : start + s][None]  # [1, S, D]
        for i, w in enumerate(self.layers):
            q, k, v = self._qkv(w, rms_norm(x, w.input_norm, self.eps), cos, sin)
            attn = cache.prefill(i, q, k, v, start, self.scale)  # [1, H, S, D]
            x = x + F.linear(attn.transpose(1, 2).reshape(1, s, -1), w.o)
            x = x + self._mlp(w, rms_norm(x, w.post_norm, self.eps))
        return x

    def decode(self, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids [G] at positions [G] (also their cache slots) -> fp32 logits [G, V]. No host sync."""
        g = ids.shape[0]
        x = F.embedding(ids[:, None], self.embed)  # [G, 1, hidden]
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]  # [G, 1, D]
        for i, w in enumerate(self.layers):
            q, k, v = self._qkv(w, rms_norm(x, w.input_norm, self.eps), cos, sin)
            attn = cache.decode(i, q, k, v, positions, self.scale)  # [G, H, 1, D]
            x = x + F.linear(attn.transpose(1, 2).reshape(g, 1, -1), w.o)
            x = x + self._mlp(w, rms_norm(x, w.post_norm, self.eps))
        return self._logits(x[:, 0])


def _data(module_or_tensor, attr: str | None = None):
    if module_or_tensor is None:
        return None
    t = getattr(module_or_tensor, attr) if attr else module_or_tensor
    return None if t is None else t.data


def vars_of(layer: LayerWeights) -> list:
    return [getattr(layer, name) for name in LayerWeights.__slots__]

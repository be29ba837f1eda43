"""One readable forward for dense GQA decoders (Llama, Mistral, Qwen2, Qwen3).

Weights are the tensors transformers loaded (no copies); shapes come from the HF config through
ModelSpec. The layers' computation is engine/layer.py; here the model around them: construction,
caches, prefill in chunks, and the decode step (its prologue, the layers, final norm and LM head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..memory import KVPolicy
from ..spec import ModelSpec
from . import compiling
from .cache import KVCache, Where
from .kvstore import DenseStore, QuantStore
from .layer import (
    LINEARS,
    LayerWeights,
    Shape,
    attention_inputs,
    attention_output_and_mlp,
    decode_layer,
    rms_norm,
)
from .linear import linear
from .policies import make_policy
from .rope import rope_table
from .wquant import QuantWeight, dequantize, quantize


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
        self.dtype, self.device = embed.dtype, embed.device
        self.embed, self.layers, self.norm, self.lm_head = embed, layers, norm, lm_head
        self.compute_layers = layers  # what the forward multiplies (see quantize_)
        self.eps = eps
        self.scale = spec.head_dim**-0.5
        self.inv_freq, self.rope_scaling, self.max_positions = inv_freq, rope_scaling, max_positions
        self.cos = self.sin = torch.empty(0, spec.head_dim, dtype=self.dtype, device=self.device)
        self.shape = Shape(spec.num_heads, spec.num_kv_heads, spec.head_dim, eps, self.scale)
        cuda = self.device.type == "cuda"
        # compiled plainly at every batch size (engine/compiling.py says why not autotuned); each
        # compiles twice, for the first layer (nothing to finish) and for the others (decode_layer)
        self._decode_layer = compiling.compiled(decode_layer) if cuda else decode_layer
        # what a decode step does before and after its layers, in a few kernels instead of ~15
        self._decode_inputs = compiling.compiled(decode_inputs) if cuda else decode_inputs
        self._decode_logits = compiling.compiled(decode_logits) if cuda else decode_logits

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def from_hf(
        cls, model, spec: ModelSpec, device: str | torch.device | None = None, bits: int = 16
    ) -> Decoder:
        """Take the weights of a transformers *ForCausalLM (Llama/Mistral/Qwen2/Qwen3), moved to `device`
        (default: where they are) and, with bits 8 or 4, quantized there (see quantize_).

        Layer by layer: q/k/v and gate/up are stacked, moved and quantized, and the module's own copies
        are released, so the target device never holds more than one 16-bit layer beyond the result
        (a 4-bit model loads on a GPU too small for its 16-bit form); the model is unusable afterwards.
        """
        body, config = model.model, model.config
        device = torch.device(device) if device is not None else body.embed_tokens.weight.device

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.data.to(device)

        layers = []
        for layer in body.layers:
            attn, mlp = layer.self_attn, layer.mlp
            bias = None
            if attn.q_proj.bias is not None:
                bias = take(torch.cat([attn.q_proj.bias.data, attn.k_proj.bias.data, attn.v_proj.bias.data]))
            weights = LayerWeights(
                input_norm=take(layer.input_layernorm.weight),
                qkv=take(
                    torch.cat([attn.q_proj.weight.data, attn.k_proj.weight.data, attn.v_proj.weight.data])
                ),
                o=take(attn.o_proj.weight),
                post_norm=take(layer.post_attention_layernorm.weight),
                gate_up=take(torch.cat([mlp.gate_proj.weight.data, mlp.up_proj.weight.data])),
                down=take(mlp.down_proj.weight),
                qkv_bias=bias,
                q_norm=take(_data(getattr(attn, "q_norm", None))),
                k_norm=take(_data(getattr(attn, "k_norm", None))),
            )
            layers.append(_quantized(weights, bits))
            for module in (
                attn.q_proj,
                attn.k_proj,
                attn.v_proj,
                mlp.gate_proj,
                mlp.up_proj,
                attn.o_proj,
                mlp.down_proj,
            ):
                module.weight = None  # release the module's copy now
                module.bias = None
        rotary = body.rotary_emb
        embed = take(body.embed_tokens.weight)
        tied = model.lm_head.weight is body.embed_tokens.weight
        decoder = cls(
            spec,
            embed,
            layers,
            take(body.norm.weight),
            embed if tied else take(model.lm_head.weight),
            rotary.inv_freq.to(device),
            float(rotary.attention_scaling),
            config.rms_norm_eps,
            config.max_position_embeddings,
        )
        decoder._set_compute_layers()
        return decoder

    @classmethod
    def random(
        cls,
        spec: ModelSpec,
        dtype: torch.dtype,
        device: str | torch.device,
        rope_theta: float = 1e6,
        max_positions: int = 40960,
        seed: int = 0,
    ) -> Decoder:
        """Random weights of the real shapes (for benchmarks: no download). Std 0.02 like HF init."""
        gen = torch.Generator(device=device).manual_seed(seed)

        def w(*shape):
            return torch.randn(*shape, generator=gen, device=device, dtype=dtype).mul_(0.02)

        def ones(n):
            return torch.ones(n, dtype=dtype, device=device)

        h, d, i = spec.hidden_size, spec.head_dim, spec.intermediate_size
        qkv_out = (spec.num_heads + 2 * spec.num_kv_heads) * d
        layers = [
            LayerWeights(
                input_norm=ones(h),
                qkv=w(qkv_out, h),
                o=w(h, spec.num_heads * d),
                post_norm=ones(h),
                gate_up=w(2 * i, h),
                down=w(h, i),
                qkv_bias=w(qkv_out) if spec.qkv_bias else None,
                q_norm=ones(d) if spec.qk_norm else None,
                k_norm=ones(d) if spec.qk_norm else None,
            )
            for _ in range(spec.num_layers)
        ]
        embed = w(spec.vocab_size, h)
        head = embed if spec.tie_word_embeddings else w(spec.vocab_size, h)
        inv_freq = 1.0 / (rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        return cls(spec, embed, layers, ones(h), head, inv_freq, 1.0, 1e-6, max_positions)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all distinct weight tensors (a tied head counts once)."""
        tensors = [self.embed, self.norm, self.lm_head]
        for layer in self.layers:
            for t in layer:
                if isinstance(t, QuantWeight):
                    tensors += [t.qweight, t.scales, t.zeros]
                elif t is not None:
                    tensors.append(t)
        unique = {t.data_ptr(): t for t in tensors}
        return sum(t.numel() * t.element_size() for t in unique.values())

    def quantize_(self, bits: int) -> None:
        """Replace the decoder layers' linear weights by `bits`-bit group-128 integers, one matrix at a
        time (the 16-bit copy of each is released before the next is quantized). Embeddings, norms and
        the LM head stay 16-bit, as in the study's convention.

        On the CPU, which has no fused dequantizing kernel, each matrix is also dequantized once into
        `compute_layers` and the forward multiplies those (the same values the reference kernel
        computes at every step, so results are identical; it trades memory for a ~3x faster CPU step).
        CPU runs measure accuracy; memory and speed are measured on the GPU, where the packed form is
        all there is (engine/kernels/qlinear.py multiplies it)."""
        if bits == 16:
            return
        for i, layer in enumerate(self.layers):
            self.layers[i] = _quantized(layer, bits)
            layer = None
        self._set_compute_layers()

    def _set_compute_layers(self) -> None:
        """On the CPU, quantized matrices dequantized once for the forward (see quantize_)."""
        quantized = any(isinstance(getattr(w, n), QuantWeight) for w in self.layers for n in LINEARS)
        if self.device.type == "cpu" and quantized:
            self.compute_layers = [
                w._replace(**{n: dequantize(getattr(w, n), self.dtype) for n in LINEARS}) for w in self.layers
            ]

    def token_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """fp32 logits [S, V] at every position of ids [S] (one prompt; for perplexity)."""
        cache = self.new_cache(1, ids.shape[0])
        return self._logits(self._prefill_chunk(ids, cache, 0)[0])

    def new_cache(
        self,
        rows: int,
        tokens: int,
        kv: KVPolicy | str = "full",
        answer_slots: int = 0,
        track_positions: bool = False,
    ) -> KVCache:
        """A cache for rows that would each hold `tokens` tokens uncompressed, `answer_slots` of them the
        answer of a budget checkpoint (kept past the eviction limit); the RoPE table grows to cover
        the positions (never past the model's maximum)."""
        policy = KVPolicy.parse(kv) if isinstance(kv, str) else kv
        if tokens > self.max_positions:
            raise ValueError(f"{tokens} tokens exceed the model's {self.max_positions} positions")
        if tokens > self.cos.shape[0]:
            self.cos, self.sin = rope_table(self.inv_freq, self.rope_scaling, tokens, self.dtype, self.device)
            for table in (self.cos, self.sin):  # one compiled decode_inputs for every table length
                torch._dynamo.mark_dynamic(table, 0)
        s = self.spec
        capacity = policy.held_tokens(tokens, answer_slots)
        shape = (s.num_layers, rows, s.num_kv_heads, capacity, s.head_dim, self.dtype, self.device)
        store = DenseStore(*shape) if policy.bits is None else QuantStore(*shape, policy.bits, s.num_heads)
        evict = make_policy(policy.eviction, policy.budget) if policy.eviction else None
        return KVCache(store, s.num_layers, s.num_heads, s.head_dim, self.scale, evict, track_positions)

    def capture_stream(self) -> torch.cuda.Stream:
        """The side stream on which every DecodeStep warms up and captures its graph: one per GPU for
        all models of the process (CAPTURE_STREAMS). torch keeps a 32 MiB cuBLAS workspace per
        stream that ran a product until the process ends; a new stream per step (one per
        `generate_batch` call) added one to the allocated memory each time, up to torch's pool of 32
        streams (1 GiB), and one per model did the same across a sweep's model groups -- and so to
        every later peak-memory figure."""
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        if index not in CAPTURE_STREAMS:
            CAPTURE_STREAMS[index] = torch.cuda.Stream(index)
        return CAPTURE_STREAMS[index]

    # --- forward -----------------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, hidden] -> fp32 logits [B, V]."""
        return final_logits(x, self.norm, self.lm_head, self.eps)

    def prefill(
        self, ids: torch.Tensor, cache: KVCache, chunk: int = 512, rows: slice = slice(None)
    ) -> torch.Tensor:
        """ids [S] of one prompt, written into the cache rows `rows` (default: all) in chunks of `chunk`
        tokens (each chunk attends causally to itself and to all earlier slots) -> fp32 logits [V] of
        the last token."""
        chunk = cache.prefill_chunk(ids.shape[0], chunk)
        for start in range(0, ids.shape[0], chunk):
            part = ids[start : start + chunk]
            cache.before_chunk(part.shape[0], rows)
            x = self._prefill_chunk(part, cache, start, rows)
            cache.after_chunk(part.shape[0], rows)
        return self._logits(x[0, -1:])[0]

    def _prefill_chunk(
        self, ids: torch.Tensor, cache: KVCache, start: int, rows: slice = slice(None)
    ) -> torch.Tensor:
        """ids [S] at positions start.. -> hidden states [1, S, hidden]."""
        s = ids.shape[0]
        x = F.embedding(ids[None], self.embed)  # [1, S, hidden]
        cos, sin = self.cos[start : start + s][None], self.sin[start : start + s][None]  # [1, S, D]
        for i, w in enumerate(self.compute_layers):
            q, k, v = attention_inputs(x, cos, sin, w, self.shape)
            attn = cache.prefill(i, q, k, v, start, self.scale, rows)  # [1, H, S, D]
            x = attention_output_and_mlp(x, attn, w, self.shape)
        return x

    def decode(
        self, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache, where: Where | None = None
    ) -> torch.Tensor:
        """ids [G] at positions [G] -> fp32 logits [G, V]. No host sync. `where`: the rows' slots and
        query-ring entries (as `KVCache.where` gives them) and positions; by default slots = positions
        (a cache without eviction, written token by token)."""
        if where is None:
            where = Where(positions, positions, positions)
        x, cos, sin, lengths = self._decode_inputs(
            ids, positions, where.slots, self.embed, self.cos, self.sin
        )
        # the rows' lengths after the write: for one row computed once per step (Qwen3-0.6B step 1 %
        # faster); for several in every layer, next to the attention (its kernel measured 8 % faster
        # so at 16 rows, for a reason not found)
        where = where._replace(lengths=lengths if ids.shape[0] == 1 else None)
        act = down = None  # each layer's down projection is done by the next (see decode_layer)
        for i, w in enumerate(self.compute_layers):
            x, act = self._decode_layer(
                x, act, down, cos, sin, where, cache.decode_op, cache.layer_buffers(i), w, self.shape
            )
            down = w.down
        return self._decode_logits(x[:, 0], act[:, 0], down, self.norm, self.lm_head, self.eps)


def decode_inputs(
    ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, embed: torch.Tensor, cos, sin
):
    """ids, positions, slots [G] -> embeddings x [G, 1, hidden], the RoPE rows cos, sin [G, 1, D] of the
    positions (from the tables cos, sin [P, D]) and the rows' cache lengths after the step, slots + 1
    [G]."""
    return F.embedding(ids[:, None], embed), cos[positions][:, None], sin[positions][:, None], slots + 1


def final_logits(x: torch.Tensor, norm: torch.Tensor, lm_head: torch.Tensor, eps: float) -> torch.Tensor:
    """Hidden states x [B, hidden] -> fp32 logits [B, V] (final RMSNorm, LM head)."""
    return F.linear(rms_norm(x, norm, eps), lm_head).float()


def decode_logits(x, act, down, norm: torch.Tensor, lm_head: torch.Tensor, eps: float) -> torch.Tensor:
    """The last layer's down projection, residual add and final_logits: x [G, hidden] (residual stream
    before the projection), act [G, inter] (its input), down (its weight) -> fp32 logits [G, V]."""
    return final_logits(x + linear(act, down), norm, lm_head, eps)


def _quantized(layer: LayerWeights, bits: int) -> LayerWeights:
    """The layer with its linear weights as `bits`-bit integers (16: unchanged)."""
    if bits == 16:
        return layer
    return layer._replace(**{name: quantize(getattr(layer, name), bits) for name in LINEARS})


def _data(norm) -> torch.Tensor | None:
    return None if norm is None else norm.weight.data


# the capture stream of each GPU (by index), shared by every model of the process: Decoder.capture_stream
CAPTURE_STREAMS: dict[int, torch.cuda.Stream] = {}

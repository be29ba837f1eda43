"""GPTQ and AWQ checkpoints read into the engine's int8/int4 layout, without their CUDA packages.

Formats (HF `quantization_config.quant_method`):
  gptq (AutoGPTQ / GPTQModel, 4 or 8 bits, `desc_act` false): qweight int32 [K * b / 32, N] packed along
      K (value j of a word at bit b * j); qzeros int32 [G, N * b / 32] packed along N; scales fp16 [G, N];
      g_idx [K]. `checkpoint_format` "gptq" stores zero - 1, "gptq_v2" the zero itself.
  awq (AutoAWQ GEMM, 4 bits): qweight int32 [K, N / 8] and qzeros int32 [G, N / 8] packed along N in the
      order 0 2 4 6 1 3 5 7; scales fp16 [G, N].
Both dequantize as w = (q - zero) * scale per group of 128 inputs, which is exactly our layout; the
import transposes to [N, K] and repacks, so the dequantized weights are reproduced bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..spec import ModelSpec, SpecError
from .layer import LayerWeights
from .model import Decoder
from .wquant import GROUP, QuantWeight, pack4, unpacked

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def quant_config(path: Path) -> dict | None:
    """The `quantization_config` of a checkpoint directory if it is GPTQ or AWQ, else None."""
    config_file = path / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text()).get("quantization_config") or {}
    return config if config.get("quant_method") in ("gptq", "awq") else None


def _unpack_words(words: torch.Tensor, bits: int, dim: int, order=None) -> torch.Tensor:
    """int32 words -> the unsigned b-bit values they hold, expanded along `dim` (value i of a word comes
    from bits [b*i, b*i + b), placed at position order[i] within the word's group)."""
    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    values = (words.unsqueeze(-1) >> shifts) & (2**bits - 1)  # [..., per_word]
    if order is not None:
        values = values[..., torch.argsort(torch.tensor(order))]
    values = values.movedim(-1, dim + 1) if dim == 0 else values
    shape = list(words.shape)
    shape[dim] *= per_word
    return values.reshape(shape).to(torch.uint8)


def _ours(q_nk: torch.Tensor, zeros_ng: torch.Tensor, scales_ng: torch.Tensor, bits: int) -> QuantWeight:
    """Our layout from unpacked q [N, K], zeros [N, G] and scales [N, G]."""
    n, k = q_nk.shape
    if int(zeros_ng.max()) >= 2**bits:
        raise SpecError(f"a zero point of {int(zeros_ng.max())} does not fit {bits} bits")
    zeros_ng = zeros_ng.to(torch.uint8)
    if bits == 4:
        return QuantWeight(pack4(q_nk), scales_ng.contiguous(), pack4(zeros_ng), 4, (n, k))
    return QuantWeight(q_nk.contiguous(), scales_ng.contiguous(), zeros_ng.contiguous(), 8, (n, k))


def import_gptq(t: dict[str, torch.Tensor], prefix: str, config: dict) -> QuantWeight:
    bits = int(config["bits"])
    k = t[f"{prefix}.qweight"].shape[0] * 32 // bits
    g_idx = t.get(f"{prefix}.g_idx")
    if g_idx is not None and not torch.equal(g_idx.long(), torch.arange(k) // GROUP):
        raise SpecError(
            f"{prefix}: act-order GPTQ (desc_act) is not supported; use a desc_act=false checkpoint"
        )
    q = _unpack_words(t[f"{prefix}.qweight"], bits, dim=0)  # [K, N]
    zeros = _unpack_words(t[f"{prefix}.qzeros"], bits, dim=1)  # [G, N]
    if config.get("checkpoint_format", "gptq") == "gptq":
        zeros = zeros.to(torch.int32) + 1  # v1 stores zero - 1
    return _ours(
        q.T, zeros.T.to(torch.uint8) if int(zeros.max()) < 256 else zeros.T, t[f"{prefix}.scales"].T, bits
    )


def import_awq(t: dict[str, torch.Tensor], prefix: str, config: dict) -> QuantWeight:
    bits = int(config.get("bits", config.get("w_bit", 4)))
    if bits != 4 or config.get("version", "gemm").lower() != "gemm":
        raise SpecError("only 4-bit AWQ GEMM checkpoints are supported")
    q = _unpack_words(t[f"{prefix}.qweight"], 4, dim=1, order=AWQ_ORDER)  # [K, N]
    zeros = _unpack_words(t[f"{prefix}.qzeros"], 4, dim=1, order=AWQ_ORDER)  # [G, N]
    return _ours(q.T, zeros.T, t[f"{prefix}.scales"].T, 4)


def stack(weights: list[QuantWeight]) -> QuantWeight:
    """Concatenate quantized matrices along their outputs (q, k, v -> qkv), repacking as needed."""
    parts = [unpacked(w) for w in weights]
    q = torch.cat([p[0] for p in parts])
    zeros = torch.cat([p[1] for p in parts])
    scales = torch.cat([w.scales for w in weights])
    return _ours(q, zeros, scales, weights[0].bits)


def load_quantized(path: Path, config: dict, dtype: torch.dtype, device: str) -> tuple[Decoder, ModelSpec]:
    """A Decoder from a GPTQ/AWQ checkpoint directory (safetensors)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    if config["quant_method"] == "gptq" and int(config.get("group_size", GROUP)) != GROUP:
        raise SpecError(f"{path}: group size {config.get('group_size')} is not 128")
    if (
        config["quant_method"] == "awq"
        and int(config.get("group_size", config.get("q_group_size", GROUP))) != GROUP
    ):
        raise SpecError(f"{path}: group size is not 128")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise SpecError(f"{path}: no .safetensors files (pickled checkpoints are not loaded)")
    t: dict[str, torch.Tensor] = {}
    for file in files:
        t.update(load_file(str(file)))
    hf_config = AutoConfig.from_pretrained(str(path))
    hf_config.quantization_config = None
    spec = ModelSpec.from_config(
        {k: v for k, v in hf_config.to_dict().items() if k != "quantization_config"}, name=str(path)
    )
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(hf_config)
    rotary = type(skeleton.model.rotary_emb)(config=hf_config)  # real inv_freq, on the CPU
    read = import_gptq if config["quant_method"] == "gptq" else import_awq

    def plain(name):
        return t[name].to(dtype=dtype, device=device)

    def quant(name):
        w = read(t, name, config)
        return QuantWeight(w.qweight.to(device), w.scales.to(device), w.zeros.to(device), w.bits, w.shape)

    layers = []
    for i in range(spec.num_layers):
        p = f"model.layers.{i}"
        attn = f"{p}.self_attn"
        bias = None
        if spec.qkv_bias:
            bias = torch.cat([plain(f"{attn}.{x}_proj.bias") for x in "qkv"])
        layers.append(
            LayerWeights(
                input_norm=plain(f"{p}.input_layernorm.weight"),
                qkv=stack([quant(f"{attn}.{x}_proj") for x in "qkv"]),
                o=quant(f"{attn}.o_proj"),
                post_norm=plain(f"{p}.post_attention_layernorm.weight"),
                gate_up=stack([quant(f"{p}.mlp.gate_proj"), quant(f"{p}.mlp.up_proj")]),
                down=quant(f"{p}.mlp.down_proj"),
                qkv_bias=bias,
                q_norm=plain(f"{attn}.q_norm.weight") if spec.qk_norm else None,
                k_norm=plain(f"{attn}.k_norm.weight") if spec.qk_norm else None,
            )
        )
    embed = plain("model.embed_tokens.weight")
    head = embed if spec.tie_word_embeddings or "lm_head.weight" not in t else plain("lm_head.weight")
    decoder = Decoder(
        spec,
        embed,
        layers,
        plain("model.norm.weight"),
        head,
        rotary.inv_freq,
        float(rotary.attention_scaling),
        hf_config.rms_norm_eps,
        hf_config.max_position_embeddings,
    )
    return decoder, spec

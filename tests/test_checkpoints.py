"""GPTQ and AWQ checkpoints, written here from their format descriptions, read back exactly."""

import json

import pytest
import torch
from safetensors.torch import save_file

from membudget.engine.load import load_model
from membudget.engine.wquant import dequantize
from membudget.memory import weight_bytes
from membudget.spec import SpecError

from .conftest import tiny_config, tiny_tokenizer

LINEARS = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


def pack_along(values: torch.Tensor, bits: int, dim: int, order=None) -> torch.Tensor:
    """Pack unsigned b-bit values into int32 words along `dim` (the slot of position p is order.index(p))."""
    per = 32 // bits
    v = values.to(torch.int64).movedim(dim, -1)
    v = v.reshape(*v.shape[:-1], -1, per)
    words = torch.zeros(v.shape[:-1], dtype=torch.int64)
    for slot in range(per):
        position = order[slot] if order else slot
        words |= v[..., position] << (bits * slot)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.movedim(-1, dim).contiguous()


def write_checkpoint(path, method: str, bits: int, v2: bool = False, act_order: bool = False):
    """A tiny Llama (K = 128, 160) whose linears are random integers; returns reference weights."""
    config = tiny_config(
        "llama",
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    tensors, reference = {}, {}
    gen = torch.Generator().manual_seed(0)
    for name, tensor in model.state_dict().items():
        prefix = name.rsplit(".", 1)[0]
        if not any(prefix.endswith(linear) for linear in LINEARS):
            tensors[name] = tensor.to(torch.float16).contiguous()
            continue
        n, k = tensor.shape
        groups = k // 128
        q = torch.randint(0, 2**bits, (k, n), generator=gen)
        zeros = torch.randint(1, 2**bits - 1, (groups, n), generator=gen)
        scales = (torch.rand(groups, n, generator=gen) * 0.01 + 0.001).to(torch.float16)
        g = torch.arange(k) // 128
        reference[prefix] = ((q - zeros[g]).float() * scales.float()[g]).T  # [N, K]
        if method == "gptq":
            stored_zeros = zeros if v2 else zeros - 1
            tensors[f"{prefix}.qweight"] = pack_along(q, bits, dim=0)
            tensors[f"{prefix}.qzeros"] = pack_along(stored_zeros, bits, dim=1)
            tensors[f"{prefix}.g_idx"] = (g if not act_order else g.flip(0)).to(torch.int32)
        else:
            order = [0, 2, 4, 6, 1, 3, 5, 7]
            tensors[f"{prefix}.qweight"] = pack_along(q, 4, dim=1, order=order)
            tensors[f"{prefix}.qzeros"] = pack_along(zeros, 4, dim=1, order=order)
        tensors[f"{prefix}.scales"] = scales
    save_file(tensors, str(path / "model.safetensors"))
    quant = {"quant_method": method, "bits": bits, "group_size": 128}
    if method == "gptq":
        quant |= {"desc_act": act_order, "sym": False, "checkpoint_format": "gptq_v2" if v2 else "gptq"}
    else:
        quant |= {"version": "gemm", "zero_point": True}
    (path / "config.json").write_text(json.dumps(config.to_dict() | {"quantization_config": quant}))
    tiny_tokenizer().save_pretrained(path)
    return reference


@pytest.mark.parametrize(
    "method, bits, v2", [("gptq", 4, False), ("gptq", 8, False), ("gptq", 4, True), ("awq", 4, False)]
)
def test_import_reproduces_the_dequantized_weights_exactly(tmp_path, method, bits, v2):
    reference = write_checkpoint(tmp_path, method, bits, v2)
    loaded = load_model(str(tmp_path), dtype="float32")
    decoder = loaded.decoder
    for i, layer in enumerate(decoder.layers):
        p = f"model.layers.{i}"
        qkv = torch.cat([reference[f"{p}.self_attn.{x}_proj"] for x in "qkv"])
        gate_up = torch.cat([reference[f"{p}.mlp.gate_proj"], reference[f"{p}.mlp.up_proj"]])
        assert torch.equal(dequantize(layer.qkv), qkv)
        assert torch.equal(dequantize(layer.o), reference[f"{p}.self_attn.o_proj"])
        assert torch.equal(dequantize(layer.gate_up), gate_up)
        assert torch.equal(dequantize(layer.down), reference[f"{p}.mlp.down_proj"])
    assert decoder.layers[0].qkv.bits == bits
    logits = decoder.decode(torch.tensor([5]), torch.tensor([0]), decoder.new_cache(1, 4))
    assert torch.isfinite(logits).all()


def test_imported_bytes_equal_accounting(tmp_path):
    write_checkpoint(tmp_path, "gptq", 4)
    loaded = load_model(str(tmp_path), dtype="bfloat16")
    assert loaded.decoder.weight_bytes == weight_bytes(loaded.spec, 4)


def test_act_order_is_refused(tmp_path):
    write_checkpoint(tmp_path, "gptq", 4, act_order=True)
    with pytest.raises(SpecError, match="act-order"):
        load_model(str(tmp_path), dtype="float32")

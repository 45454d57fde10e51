"""Base model and tokenizer: resolve the URI into the cache, inspect cheaply, then load for real.

Resolution goes through the data package's URI layer so hf://, s3://, pvc:// and file:// behave the
same for models and datasets (one cache on the model-cache volume, the hub commit pinned), and fetches
only the files a run needs (`data.model_files`: config and tokenizer, plus one copy of the weights
unless only the preflight checks run). The
inspection step builds the model on the `meta` device from its config only: the estimator and the
target-module check need parameter counts and module names, and getting them must not touch a GPU
or read gigabytes of weights, so a bad spec fails in seconds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune.api.v1alpha1.objectives import TrainedModel
from kubetune_trainer.data.model_files import model_files, weight_files
from kubetune_trainer.data.uris import HfUri, ResolvedSource, parse_uri, resolve
from kubetune_trainer.errors import ConfigError

log = logging.getLogger(__name__)

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class ModelInfo:
    """What the estimator and validators need to know about a model, read without loading weights."""

    num_params: int
    hidden_size: int
    num_layers: int
    linear_shapes: dict[str, tuple[int, int]]
    """Leaf module name (e.g. `q_proj`) -> (in_features, out_features) of one instance."""
    linear_counts: dict[str, int]
    """Leaf module name -> how many modules carry that name."""
    module_names: frozenset[str]
    """Every dotted module path, for matching targets like `model.layers.0.mlp`."""
    model_type: str
    linear_modules: dict[str, tuple[int, int]]
    """Dotted name -> (in_features, out_features) of every linear module."""
    parameter_sizes: dict[str, int]
    """Parameter name -> element count (tied weights once, as `named_parameters` lists them)."""
    kv_dim: int
    """Key/value width per layer: kv heads x head dim (hidden size without grouped-query attention)."""


def resolve_base_model(
    ref: BaseModelRef, *, cache_dir: Path, pvc_root: Path, token_env: str | None, weights: bool = True
) -> ResolvedSource:
    """Materialise the base model locally (without its weights when `weights` is False: the preflight);
    hf:// pins `revision` and returns the resolved commit."""
    parsed = parse_uri(ref.uri)
    if isinstance(parsed, HfUri):
        parsed = replace(parsed, revision=parsed.revision or ref.revision)
    files = model_files(weights=weights, remote_code=ref.trust_remote_code)
    source = resolve(
        parsed, cache_dir=cache_dir, pvc_root=pvc_root, repo_type="model", token_env=token_env, files=files
    )
    if not (source.path / "config.json").is_file():
        raise ConfigError(f"baseModel {ref.uri} has no config.json at {source.path}; point it at a model directory")
    if weights and not weight_files([p.name for p in source.path.iterdir() if p.is_file()]):
        raise ConfigError(
            f"baseModel {ref.uri} has no weights at {source.path}: expected model.safetensors or pytorch_model.bin "
            "(single or sharded with an index)"
        )
    if source.revision is None:
        return ResolvedSource(uri=source.uri, path=source.path, revision=local_model_digest(source.path))
    return source


def local_model_digest(path: Path) -> str:
    """Identifies a model directory without reading its weights: names and sizes, plus the JSON files.

    Hashing every weight byte of a 70B model would add minutes to each start; config, tokenizer and
    the weight index change whenever the model does, and sizes catch re-exported shards.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.endswith((".kubetune-etag", ".partial")) or rel.startswith(".cache/"):
            continue
        digest.update(f"{rel}\0{file.stat().st_size}\0".encode())
        if file.suffix == ".json":
            digest.update(file.read_bytes())
    return "sha256:" + digest.hexdigest()


def inspect_model(path: Path, *, trust_remote_code: bool = False) -> ModelInfo:
    """Build the architecture on the meta device (no weights, no GPU) and summarise it."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot read the model config at {path}: {exc}") from exc
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)  # type: ignore[no-untyped-call]
    shapes: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}
    linears: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            leaf = name.rsplit(".", 1)[-1]
            shapes.setdefault(leaf, (module.in_features, module.out_features))
            counts[leaf] = counts.get(leaf, 0) + 1
            linears[name] = (module.in_features, module.out_features)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    return ModelInfo(
        num_params=sum(sizes.values()),
        hidden_size=int(getattr(text_config, "hidden_size", 0)),
        num_layers=int(getattr(text_config, "num_hidden_layers", 0)),
        linear_shapes=shapes,
        linear_counts=counts,
        module_names=frozenset(n for n, _ in model.named_modules() if n),
        model_type=str(getattr(config, "model_type", "unknown")),
        linear_modules=linears,
        parameter_sizes=sizes,
        kv_dim=kv_dim(text_config),
    )


def kv_dim(config: Any) -> int:
    """Width of one layer's keys (and values), as PEFT's prefix tuning sizes its prefixes."""
    hidden = int(getattr(config, "hidden_size", 0))
    kv_heads = getattr(config, "num_key_value_heads", None)
    if not kv_heads:
        return hidden
    head_dim = getattr(config, "head_dim", None) or hidden // max(1, int(getattr(config, "num_attention_heads", 1)))
    return int(head_dim) * int(kv_heads)


def load_tokenizer(path: Path, *, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer and make sure it can pad (causal LMs often ship without a pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(
    path: Path,
    *,
    precision: str,
    trained_model: TrainedModel = "causal-lm",
    extra_kwargs: Mapping[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """Load weights with the method's keyword arguments (quantization, device map) applied.

    A `sequence-classifier` (the reward objective) is a one-logit classifier head on the same base.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": getattr(torch, _DTYPES[precision]), "trust_remote_code": trust_remote_code}
    kwargs.update(extra_kwargs or {})
    if trained_model == "sequence-classifier":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    log.info("loaded base model from %s (%s, %d parameters)", path, kwargs["dtype"], model.num_parameters())
    return model

"""Adapters a run reads: the reward model, cost models, refusal judges and the constitution writer.

The trainer cannot read Adapter objects (its Role covers its own status only), so the operator resolves each
`adapterRef` of the spec to the Adapter's artifact URI and passes them, by name, in trainer.json `adapters`.
An artifact is either a complete model (full fine-tuning) or a PEFT adapter on the base named in its
manifest, which is fetched like any base model (with the run's model credentials). Scoring models (objective
reward) load as one-logit sequence classifiers, writers as causal LMs; adapters are merged into their base,
since an input model is frozen and scoring or generating through PEFT indirection would only cost time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune_trainer.context import RunContext
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.manifest import read_manifest

log = logging.getLogger(__name__)

Head = Literal["causal-lm", "sequence-classifier"]


def artifact_base_uri(artifact_dir: Path) -> tuple[str, str | None] | None:
    """(uri, revision) of the base an artifact was trained on, from its manifest."""
    manifest = read_manifest(artifact_dir)
    if manifest is None or not manifest.base_model.uri:
        return None
    return manifest.base_model.uri, manifest.base_model.revision


def adapter_artifact(ctx: RunContext, name: str, field: str) -> tuple[Path, Path | None]:
    """(artifact folder, folder of the base it was trained on) of the Adapter `name`, named at `field`."""
    from kubetune_trainer.data.uris import resolve
    from kubetune_trainer.loading import resolve_base_model

    uri = (ctx.config.adapters or {}).get(name)
    if not uri:
        raise ConfigError(
            f"Adapter {name} ({field}) was not resolved: the operator passes its artifact URI in trainer.json "
            f"adapters once Adapter {name} is Ready (`kubetune run` of a file cannot resolve Adapters: run it on a "
            f"cluster, or pass a trainer.json with adapters: {{{name}: ARTIFACT_URI}} to the trainer)"
        )
    directory = resolve(uri, cache_dir=ctx.paths.cache_dir, pvc_root=ctx.paths.pvc_root, repo_type="model").path
    base = artifact_base_uri(directory)
    if base is None or base[0] == ctx.spec.base_model.uri:
        return directory, ctx.base_model_path
    source = resolve_base_model(
        BaseModelRef(uri=base[0], revision=base[1] or "main"),
        cache_dir=ctx.paths.cache_dir,
        pvc_root=ctx.paths.pvc_root,
        token_env=ctx.config.runtime.model_token_env,
    )
    return directory, source.path


def load_artifact(artifact_dir: Path, base_model_path: Path | None, head: Head) -> tuple[Any, Any]:
    """(model, tokenizer) of an artifact with `head`: a complete model, or its base + the PEFT adapter merged."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from kubetune_trainer.tokenizer_align import resize_embeddings

    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def load(path: Path) -> Any:
        if head == "sequence-classifier":
            return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        return AutoModelForCausalLM.from_pretrained(path)

    if (artifact_dir / "config.json").is_file():
        model = load(artifact_dir)
    else:
        if base_model_path is None:
            raise ConfigError(f"{artifact_dir} holds an adapter but its manifest names no base model")
        from peft import PeftModel

        base = load(base_model_path)
        resize_embeddings(base, tokenizer)
        model = PeftModel.from_pretrained(base, str(artifact_dir)).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False)
    return model, tokenizer


def load_adapter(ctx: RunContext, name: str, field: str, head: Head) -> tuple[Any, Any]:
    """The Adapter `name` as a frozen model on this process's device, with its tokenizer."""
    from accelerate import PartialState

    model, tokenizer = load_artifact(*adapter_artifact(ctx, name, field), head)
    log.info("loaded Adapter %s (%s) as a %s", name, field, head)
    return model.to(PartialState().device), tokenizer


def sigmoid_scores(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 8) -> list[float]:
    """sigmoid(score) of a one-logit classifier for each text: a probability-like value in (0, 1)."""
    import torch

    device = next(model.parameters()).device
    values: list[float] = []
    for first in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[first : first + batch_size]),
            return_tensors="pt",
            padding=True,
            padding_side="right",
            add_special_tokens=False,
        )
        with torch.inference_mode():
            logits = model(**batch.to(device)).logits[:, 0]
        values.extend(1 / (1 + math.exp(-float(score))) for score in logits.float().cpu())
    return values

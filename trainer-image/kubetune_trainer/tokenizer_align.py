"""Tokenizer alignment: new tokens, resized embeddings, and a chat template override.

New tokens are useless unless their embedding rows (and output rows, when untied) are trained, and
with an adapter method the base embeddings are frozen. So alignment also says which embedding
modules the method must make trainable: PEFT LoRA trains just the new rows
(`trainable_token_indices`), the other adapter methods save the whole embedding modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubetune.api.v1alpha1.data import TokenizerSpec
from kubetune_trainer.errors import ConfigError

log = logging.getLogger(__name__)

PAD_TO_MULTIPLE_OF = 8
"""Embedding rows are padded to a multiple of 8 so tensor-core matmuls keep their fast shapes."""


@dataclass(frozen=True)
class EmbeddingModules:
    """Leaf names of the input embedding and (when not tied to it) output projection modules."""

    input_name: str
    output_name: str | None

    @property
    def names(self) -> list[str]:
        return [self.input_name] + ([self.output_name] if self.output_name else [])


def align_tokenizer(tokenizer: Any, spec: TokenizerSpec) -> list[int]:
    """Apply the chat template override and add the spec's new tokens; returns the new token ids."""
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    if not spec.add_tokens:
        return []
    vocab = tokenizer.get_vocab()
    fresh = [t for t in dict.fromkeys(spec.add_tokens) if t not in vocab]
    added = tokenizer.add_tokens(fresh)
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in fresh]
    log.info("added %d tokens to the vocabulary (now %d)", added, len(tokenizer))
    return ids


def require_chat_template(tokenizer: Any, columns: list[str]) -> None:
    """Conversations (`messages` rows) are rendered with the tokenizer's chat template; without one the
    trainer would fail only after the weights are loaded."""
    if "messages" in columns and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "dataset rows are conversations but the base model's tokenizer has no chat template: set "
            "tokenizer.chatTemplate, or use a model that ships one"
        )


def resize_embeddings(model: Any, tokenizer: Any) -> None:
    """Grow the embeddings to the tokenizer; new rows get the mean/covariance init of transformers."""
    # num_embeddings, not weight.shape: under ZeRO-3 the local weight is an empty partition
    current = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > current:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
        log.info("resized embeddings from %d to %d rows", current, model.get_input_embeddings().num_embeddings)


def embedding_modules(model: Any) -> EmbeddingModules:
    """Find the embedding modules by identity, so any architecture's naming works."""
    by_id = {id(m): name for name, m in model.named_modules()}
    input_emb = model.get_input_embeddings()
    output_emb = model.get_output_embeddings()
    tied = output_emb is None or output_emb.weight is input_emb.weight
    in_name = by_id[id(input_emb)].rsplit(".", 1)[-1]
    out_name = None if tied else by_id[id(output_emb)].rsplit(".", 1)[-1]
    return EmbeddingModules(input_name=in_name, output_name=out_name)


def new_token_training(model: Any, ids: list[int]) -> tuple[dict[str, list[int]], list[str]]:
    """How LoRA trains new tokens: (`trainable_token_indices`, `modules_to_save`).

    Only the new input rows are trained (cheap, small adapter). The output head cannot use PEFT's
    per-row wrapper because TRL's fused LM-head loss reads `lm_head.weight` directly, so an untied
    head is saved whole; a tied head follows a trainable copy of the embedding instead.
    """
    if not ids:
        return {}, []
    modules = embedding_modules(model)
    if modules.output_name is None:
        return {}, [modules.input_name]
    return {modules.input_name: list(ids)}, [modules.output_name]

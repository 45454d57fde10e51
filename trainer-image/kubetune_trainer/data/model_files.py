"""Which files of a model repository (hf://) or prefix (s3://) a run downloads.

A hub repository often holds the same weights several times (`model.safetensors` and
`pytorch_model.bin`, GGUF or ONNX exports, Meta's `original/` checkpoints, Mistral's
`consolidated.safetensors`), so fetching a whole snapshot can cost several times the model's size.
A run needs the config, the tokenizer and one copy of the weights in the format transformers loads
first (safetensors, else PyTorch `.bin`); the preflight pod needs only the config and the tokenizer.
Only top-level files are ever taken: subfolders hold other variants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

CONFIG_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece*.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)
"""What `AutoConfig` and `AutoTokenizer` read: enough to build the model on the meta device and tokenize."""
REMOTE_CODE_PATTERNS = ("*.py",)
"""Model code of a `trustRemoteCode` repository (the config's `auto_map` points into it)."""
SAFETENSORS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
PYTORCH_BIN = ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json")
"""transformers' own weight names, single file or sharded with an index (its first and second choice)."""


def _matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    return [n for n in names if "/" not in n and any(fnmatchcase(n, p) for p in patterns)]


def weight_files(names: Sequence[str]) -> list[str]:
    """One copy of the weights: transformers' safetensors names, else its `.bin` names, else any top-level
    safetensors (a repository with custom shard names); never both formats."""
    for patterns in (SAFETENSORS, PYTORCH_BIN):
        found = _matching(names, patterns)
        if any(not n.endswith(".json") for n in found):
            return found
    return _matching(names, ("*.safetensors", "*.safetensors.index.json"))


@dataclass(frozen=True)
class FileSelection:
    """Files to fetch: every top-level name matching `patterns`, plus what `pick` chooses from the full listing.

    `patterns` alone are enough to fetch before the listing is known (the hub's first pass); `pick` needs it.
    """

    patterns: tuple[str, ...]
    pick: Callable[[Sequence[str]], list[str]] | None = None

    def select(self, names: Sequence[str]) -> list[str]:
        chosen = set(_matching(names, self.patterns))
        if self.pick is not None:
            chosen.update(self.pick(names))
        return sorted(chosen)


def model_files(*, weights: bool, remote_code: bool) -> FileSelection:
    """Config and tokenizer (and model code when trusted), plus the weights when the run loads them."""
    patterns = CONFIG_PATTERNS + (REMOTE_CODE_PATTERNS if remote_code else ())
    return FileSelection(patterns=patterns, pick=weight_files if weights else None)

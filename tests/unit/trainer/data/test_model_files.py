"""Which model files a run downloads: the pure selection, and real `snapshot_download`s from a local Hub.

The Hub is `support.hub_server` (huggingface_hub pointed at it through `HF_ENDPOINT`), serving a
repository with what real ones hold besides the weights transformers loads: a `.bin` copy, Mistral's
`consolidated.safetensors`, GGUF and ONNX exports, Meta's `original/` checkpoint, training leftovers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune.api.v1alpha1.data import BaseModelRef
from kubetune_trainer.data.model_files import model_files, weight_files
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.loading import resolve_base_model
from support.hub_server import COMMIT, Hub, serving

pytestmark = pytest.mark.unit

CONFIG = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model"}
SHARDS = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"}
DECOYS = {
    "pytorch_model.bin",
    "consolidated.safetensors",
    "model.gguf",
    "onnx/model.onnx",
    "original/consolidated.00.pth",
    "original/tokenizer.model",
    "training_args.bin",
    "README.md",
    "modeling_custom.py",
}


def test_one_copy_of_the_weights_in_the_format_transformers_prefers() -> None:
    listing = sorted(CONFIG | SHARDS | DECOYS)
    assert weight_files(listing) == sorted(SHARDS)
    assert weight_files(["config.json", "pytorch_model.bin", "training_args.bin"]) == ["pytorch_model.bin"]
    assert weight_files(["custom-1.safetensors", "original/x.safetensors"]) == ["custom-1.safetensors"]
    assert weight_files(["config.json", "model.safetensors.index.json"]) == ["model.safetensors.index.json"]
    assert model_files(weights=False, remote_code=False).select(listing) == sorted(CONFIG)
    assert model_files(weights=True, remote_code=True).select(listing) == sorted(
        CONFIG | SHARDS | {"modeling_custom.py"}
    )


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """Online against the local Hub (the test environment is offline by default)."""
    from huggingface_hub import constants

    files = {name: f"{name} bytes".encode() for name in CONFIG | SHARDS | DECOYS}
    files["config.json"] = b'{"model_type": "llama"}'
    bin_only = {"config.json": b"{}", "tokenizer.json": b"[]", "pytorch_model.bin": b"w", "training_args.bin": b"t"}
    with serving({"acme/llama": files, "acme/old": bin_only, "acme/empty": {"config.json": b"{}"}}) as running:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        yield running


def resolve(uri: str, cache: Path, *, weights: bool, remote_code: bool = False) -> Path:
    ref = BaseModelRef(uri=uri, trust_remote_code=remote_code)
    source = resolve_base_model(ref, cache_dir=cache, pvc_root=cache, token_env=None, weights=weights)
    assert source.revision == COMMIT
    return source.path


def test_the_preflight_fetches_config_and_tokenizer_and_the_run_adds_one_copy_of_the_weights(
    hub: Hub, tmp_path: Path
) -> None:
    checked = resolve("hf://acme/llama", tmp_path, weights=False)
    assert hub.fetched("acme/llama") == CONFIG
    trained = resolve("hf://acme/llama", tmp_path, weights=True)
    assert trained == checked, "the training pod finds the preflight's files in the same (shared) cache"
    assert hub.fetched("acme/llama") == CONFIG | SHARDS
    assert len(hub.downloads) == len(CONFIG | SHARDS), "nothing is downloaded twice"
    assert {p.name for p in trained.iterdir()} == CONFIG | SHARDS
    resolve("hf://acme/llama", tmp_path, weights=True, remote_code=True)
    assert hub.fetched("acme/llama") == CONFIG | SHARDS | {"modeling_custom.py"}


def test_a_repository_without_safetensors_gives_its_bin_weights(hub: Hub, tmp_path: Path) -> None:
    resolve("hf://acme/old", tmp_path, weights=True)
    assert hub.fetched("acme/old") == {"config.json", "tokenizer.json", "pytorch_model.bin"}
    with pytest.raises(ConfigError, match=r"baseModel hf://acme/empty has no weights .* model.safetensors"):
        resolve("hf://acme/empty", tmp_path, weights=True)


def test_offline_the_cache_serves_what_was_fetched(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    online = resolve("hf://acme/llama", tmp_path, weights=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fetched = len(hub.downloads)
    assert resolve("hf://acme/llama", tmp_path, weights=True) == online
    assert len(hub.downloads) == fetched

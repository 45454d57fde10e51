"""hf:// against a local stand-in for the Hugging Face Hub (`support.local_hub`): the trainer downloads its base
model and an hf://datasets/... dataset, trains, and pushes the adapter with a model card in one commit that its
result pins; a token that cannot write fails before any data is read; `kubetune estimate` reads an hf:// config.

What the stand-in does not cover: the LFS/Xet transfer the real Hub uses for large files (every file goes
inline in the commit here), and the Hub's own authorization rules beyond one write token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.cli import main
from kubetune_dev.tiny import text_rows
from kubetune_trainer.artifacts import load_trained, tree_digest
from kubetune_trainer.data.uris import resolve
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.manifest import read_manifest
from kubetune_trainer.pipeline import run
from support.local_hub import LocalHub, running_hub
from support.trainer_job import trainer_config

pytestmark = [pytest.mark.integration, pytest.mark.trainer]

TOKEN_ENV = "KUBETUNE_OUTPUT_TOKEN"


@pytest.fixture
def hub(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """The stand-in Hub with a tiny base model and a text dataset, and the trainer's environment pointed at it."""
    from huggingface_hub import constants

    with running_hub() as server:
        server.put("model", "org/tiny-base", {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()})
        rows = "".join(f'{{"text": "{row["text"]}"}}\n' for row in text_rows())
        server.put("dataset", "org/counting", {"train.jsonl": rows.encode()})
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; the Makefile sets it
        monkeypatch.setenv(TOKEN_ENV, server.token)
        yield server


def _config(tmp_path: Path, model_dir: Path, repo: str = "team/tiny-lora") -> TrainerConfig:
    wire = trainer_config(
        tmp_path,
        model_dir,
        tmp_path / "unused.jsonl",
        "lora",
        output={"uri": f"hf://{repo}", "credentialsSecretRef": {"name": "hub-write"}},
        runtime={"outputTokenEnv": TOKEN_ENV},
    )
    wire["job"]["baseModel"] = {"uri": "hf://org/tiny-base"}
    wire["job"]["dataset"]["train"] = {"uri": "hf://datasets/org/counting"}
    wire["job"]["checkpointing"]["storage"] = {"uri": f"file://{tmp_path}/checkpoints/"}  # the Hub holds no checkpoints
    return TrainerConfig.model_validate(wire)


def test_adapter_is_pushed_with_a_model_card_in_one_pinned_commit(
    tmp_path: Path, model_dir: Path, hub: LocalHub
) -> None:
    result = run(_config(tmp_path, model_dir))
    repo = hub.repos[("model", "team/tiny-lora")]
    assert repo.private
    assert len(repo.commits) == 1
    sha, files = repo.commits[0]
    assert result.artifact_uri == f"hf://team/tiny-lora@{sha}"
    assert {"adapter_model.safetensors", "adapter_config.json", "kubetune.json", "README.md"} <= set(files)
    assert repo.messages == ["kubetune: lora adapter from FineTuneJob ns/job"]
    card = files["README.md"].decode()
    header = yaml.safe_load(card.split("---")[1])
    assert header["base_model"] == "org/tiny-base"
    assert header["datasets"] == ["org/counting"]
    assert header["library_name"] == "peft"
    assert f"| train.loss | {result.metrics['train.loss']:.6g} |" in card
    assert "Gate: **passed**." in card  # no suites and no thresholds: the gate holds
    assert "| precision, seed | fp32, 42 |" in card  # CPU trains in fp32; the default seed
    assert "| method | lora (requested lora): `{" in card
    base_commit = hub.repos[("model", "org/tiny-base")].commits[0][0]
    assert f"`hf://org/tiny-base` @ `{base_commit}`" in card  # lineage: the base revision actually trained on

    # the pinned URI reads back through the same resolution merges and reward models use
    # the repository is private: reading it back needs the token too
    pulled = resolve(result.artifact_uri, cache_dir=tmp_path / "readback", repo_type="model", token_env=TOKEN_ENV).path
    assert tree_digest(pulled) == (result.sha256, result.size_bytes)
    manifest = read_manifest(pulled)
    assert manifest is not None
    assert manifest.base_model.revision == base_commit
    assert manifest.dataset.digest
    assert f"| training data | `hf://datasets/org/counting` ({manifest.dataset.digest}) |" in card
    assert "README.md" in manifest.files
    base = resolve("hf://org/tiny-base", cache_dir=tmp_path / "readback", repo_type="model").path
    assert load_trained(pulled, base) is not None


def test_second_run_is_a_new_commit_of_the_same_repository(tmp_path: Path, model_dir: Path, hub: LocalHub) -> None:
    first = run(_config(tmp_path / "a", model_dir))
    second = run(_config(tmp_path / "b", model_dir))
    repo = hub.repos[("model", "team/tiny-lora")]
    assert [c[0] for c in repo.commits] == [first.artifact_uri.split("@")[1], second.artifact_uri.split("@")[1]]
    pinned = resolve(first.artifact_uri, cache_dir=tmp_path / "c", repo_type="model", token_env=TOKEN_ENV)
    assert pinned.path.is_dir()  # still readable


def test_a_token_that_cannot_write_fails_before_the_data_is_read(
    tmp_path: Path, model_dir: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetune_trainer import data_stage

    def no_data(_ctx: Any) -> None:
        raise AssertionError("data was loaded although the output cannot be written")

    monkeypatch.setattr(data_stage, "load", no_data)
    monkeypatch.setenv(TOKEN_ENV, "hf_read_only")
    with pytest.raises(ConfigError, match=r"may not create or write team/tiny-lora \(HTTP 401\)"):
        run(_config(tmp_path, model_dir))
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigError, match=r"no Hub token; set output\.credentialsSecretRef"):
        run(_config(tmp_path, model_dir))
    assert ("model", "team/tiny-lora") not in hub.repos


def test_estimate_reads_an_hf_config(
    tmp_path: Path, model_dir: Path, hub: LocalHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "FineTuneJob",
                "metadata": {"name": "e"},
                "spec": {
                    "baseModel": {"uri": "hf://org/tiny-base"},
                    "dataset": {"train": {"uri": "hf://datasets/org/counting"}},
                    "method": {"type": "auto"},
                    "output": {"uri": "file:///out"},
                },
            }
        )
    )
    assert main(["estimate", str(job), "--gpu", "small=2"]) == 0
    out = capsys.readouterr().out
    assert "model: hf://org/tiny-base (llama): 122,816 parameters" in out
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub.put("model", "org/private-base", {"config.json": (model_dir / "config.json").read_bytes()}, private=True)
    job.write_text(job.read_text().replace("org/tiny-base", "org/private-base"))
    assert main(["estimate", str(job)]) == 1
    assert "gated or private; set HF_TOKEN to a token with access" in capsys.readouterr().out
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert main(["estimate", str(job), "--gpu", "small=2"]) == 0
    assert "model: hf://org/private-base (llama): 122,816 parameters" in capsys.readouterr().out
    job.write_text(job.read_text().replace("org/private-base", "org/missing"))
    assert main(["estimate", str(job)]) == 1
    assert "no config.json (repository or revision not found)" in capsys.readouterr().out

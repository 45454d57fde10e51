"""Merge mode: two LoRA adapters trained by the pipeline, combined with every PEFT combination type."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune_dev.tiny import alpaca_rows, text_rows, write_jsonl
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.manifest import read_manifest, write_manifest
from kubetune_trainer.merge import check_source, run

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

COMBINATIONS = [
    ("linear", None),
    ("cat", None),
    ("svd", None),
    ("ties", 0.5),
    ("dare_linear", 0.5),
    ("dare_ties", 0.5),
]
PROBE = "count three four five repeat red blue"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    """Two LoRA artifacts on the same base, trained on different tasks by the real pipeline."""
    from kubetune_trainer.pipeline import run as train
    from support.trainer_job import trainer_config

    root = tmp_path_factory.mktemp("merge-sources")
    out = {}
    for name, rows in (("counting", text_rows()), ("echo", alpaca_rows())):
        data = write_jsonl(root / f"{name}.jsonl", rows)
        wire = trainer_config(root / name, model_dir, data, "lora", name=name, training={"learningRate": 2e-2})
        result = train(TrainerConfig.model_validate(wire))
        out[name] = Path(result.artifact_uri.removeprefix("file://"))
    return out


def _merge_config(tmp: Path, model_dir: Path, sources: dict[str, Path], combination: str, density: float | None) -> Any:
    return TrainerConfig.model_validate(
        {
            "mode": "merge",
            "target": {"kind": "Adapter", "namespace": "ns", "name": "merged"},
            "merge": {
                "baseModel": {"uri": f"file://{model_dir}"},
                "sources": [
                    {"name": name, "artifactUri": f"file://{path}", "weight": 1.0} for name, path in sources.items()
                ],
                "combination": combination,
                "density": density,
                "outputUri": f"file://{tmp}/merged",
            },
            "runtime": {
                "cacheDir": str(tmp / "cache"),
                "workDir": str(tmp / "work"),
                "pvcMountRoot": str(tmp / "pvc"),
                "reportStatus": False,
            },
        }
    )


def _logits(model_dir: Path, adapter: Path | None) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    batch = AutoTokenizer.from_pretrained(model_dir)(PROBE, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits


def _delta(model_dir: Path, adapter: Path) -> dict[str, torch.Tensor]:
    """Weight change of every adapted matrix once the adapter is merged into the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().state_dict()
    return {k: merged[k] - before[k] for k in before if not torch.equal(merged[k], before[k])}


@pytest.mark.parametrize(("combination", "density"), COMBINATIONS)
def test_every_combination_loads_and_differs_from_its_inputs(
    combination: str, density: float | None, adapters: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    result = run(_merge_config(tmp_path, model_dir, adapters, combination, density))
    artifact = Path(result.artifact_uri.removeprefix("file://"))
    assert (artifact / "adapter_model.safetensors").is_file()
    manifest = read_manifest(artifact)
    assert manifest is not None
    assert manifest.merge is not None
    assert manifest.merge.combination == combination
    assert [s.name for s in manifest.merge.sources] == ["counting", "echo"]
    assert result.status_artifact()["format"] == "peft-safetensors"
    assert len(result.sha256) == 64
    assert result.size_bytes > 0
    rank = json.loads((artifact / "adapter_config.json").read_text())["r"]
    assert rank == (16 if combination == "cat" else 8)

    merged = _logits(model_dir, artifact)
    for reference in (
        _logits(model_dir, None),
        _logits(model_dir, adapters["counting"]),
        _logits(model_dir, adapters["echo"]),
    ):
        assert not torch.allclose(merged, reference, atol=1e-5)
    assert torch.isfinite(merged).all()


def test_cat_is_the_exact_sum_of_the_deltas(adapters: dict[str, Path], model_dir: Path, tmp_path: Path) -> None:
    result = run(_merge_config(tmp_path, model_dir, adapters, "cat", None))
    merged = _delta(model_dir, Path(result.artifact_uri.removeprefix("file://")))
    a, b = _delta(model_dir, adapters["counting"]), _delta(model_dir, adapters["echo"])
    assert merged.keys() == a.keys() == b.keys()
    for key, value in merged.items():
        torch.testing.assert_close(value, a[key] + b[key], atol=1e-6, rtol=1e-4)


def _with_manifest(src: Path, dest: Path, **base: str) -> Path:
    shutil.copytree(src, dest)
    manifest = read_manifest(dest)
    assert manifest is not None
    write_manifest(dest, manifest.model_copy(update={"base_model": manifest.base_model.model_copy(update=base)}))
    return dest


def test_different_base_models_are_refused(adapters: dict[str, Path], model_dir: Path, tmp_path: Path) -> None:
    other = _with_manifest(adapters["echo"], tmp_path / "other-base", uri="hf://org/another-model")
    with pytest.raises(ConfigError, match="was trained on base model hf://org/another-model"):
        run(_merge_config(tmp_path, model_dir, {"counting": adapters["counting"], "echo": other}, "linear", None))
    moved = _with_manifest(adapters["echo"], tmp_path / "other-revision", revision="sha256:" + "1" * 64)
    with pytest.raises(ConfigError, match=r"pin baseModel\.revision"):
        run(_merge_config(tmp_path, model_dir, {"counting": adapters["counting"], "echo": moved}, "linear", None))
    assert not (tmp_path / "merged").exists(), "nothing is published when the merge is refused"


def test_only_verified_lora_adapters_are_merged(tmp_path: Path) -> None:
    ia3 = tmp_path / "ia3"
    ia3.mkdir()
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(ConfigError, match="only LoRA/DoRA/QLoRA adapters"):
        check_source("ia3", ia3, "file:///base", None)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ConfigError, match="cannot be verified"):
        check_source("bare", bare, "file:///base", None)
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        check_source("empty", tmp_path, "file:///base", None)

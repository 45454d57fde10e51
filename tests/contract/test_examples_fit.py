"""The examples that name a GPU fit it: the memory estimate the trainer's preflight enforces (`preflight.memoryCheck`
defaults to enforce), from the base models' published config.json values, is within the named GPU's memory. An
example that would be refused in its GPU pod teaches the wrong thing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune.api.estimate import GIB, estimate
from kubetune.api.gpu_products import gpu_memory_bytes
from kubetune.api.model_shape import shape_from_config
from kubetune.api.sizing import choose_auto, train_setup
from kubetune.api.v1alpha1 import FineTuneJob
from kubetune.api.v1alpha1.methods import AutoMethod
from support.published_models import PUBLISHED_CONFIGS

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"


def examples_naming_a_gpu() -> list[Path]:
    return sorted(
        path
        for path in EXAMPLES.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "FineTuneJob" and "gpuProduct" in doc["spec"].get("resources", {})
    )


@pytest.mark.parametrize("uri", sorted(PUBLISHED_CONFIGS))
def test_the_configs_give_the_published_parameter_counts(uri: str) -> None:
    config, parameters = PUBLISHED_CONFIGS[uri]
    assert shape_from_config(config).num_params == parameters


@pytest.mark.parametrize("path", examples_naming_a_gpu(), ids=lambda path: path.stem)
def test_an_example_fits_the_gpu_it_names(path: Path) -> None:
    (doc,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "FineTuneJob"]
    spec = FineTuneJob.model_validate(doc).spec
    assert spec.base_model.uri in PUBLISHED_CONFIGS, f"add {spec.base_model.uri}'s published config.json here"
    config, _ = PUBLISHED_CONFIGS[spec.base_model.uri]
    shape = shape_from_config(config)
    setup = train_setup(spec, spec.training.precision, spec.resources.gpus)
    assert spec.resources.gpu_product is not None
    budget = gpu_memory_bytes(spec.resources.gpu_product)
    if isinstance(spec.method, AutoMethod):
        choice = choose_auto(shape, setup, budget, lambda method: True)
        assert choice.method is not None, f"{path.name}: auto finds nothing that fits: {choice.tried}"
        return
    needed = estimate(spec.method.type, shape, setup)
    assert needed is not None
    assert needed.total <= budget, (
        f"{path.name}: {needed.summary()} does not fit {budget / GIB:.0f} GiB of {spec.resources.gpu_product}"
    )

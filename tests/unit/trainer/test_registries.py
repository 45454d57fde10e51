"""The method and objective registries stay in step with the API unions, and refuse to build otherwise."""

from __future__ import annotations

import pytest

from kubetune.api.v1alpha1.methods import METHOD_FACTS, TRAINED_METHODS
from kubetune.api.v1alpha1.objectives import OBJECTIVE_FACTS
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.methods import METHODS
from kubetune_trainer.methods.lora import LORA, LoraUnit
from kubetune_trainer.objectives import OBJECTIVES
from kubetune_trainer.registry import Registry

pytestmark = [pytest.mark.unit, pytest.mark.trainer]


def test_every_api_variant_has_its_unit() -> None:
    assert [unit.name for unit in METHODS] == list(TRAINED_METHODS)
    assert [unit.name for unit in OBJECTIVES] == list(OBJECTIVE_FACTS)
    for unit in METHODS:
        assert unit.facts == METHOD_FACTS[unit.name]
        # the lora family is one implementation (LoRA's PEFT config), whatever its variant changes
        assert isinstance(unit, LoraUnit) is (unit.facts.family == "lora")


def test_a_registry_out_of_step_with_the_api_refuses_to_build() -> None:
    with pytest.raises(TypeError, match=r"no unit for \['ia3'\], no variant for \[\]"):
        Registry("method", [unit for unit in METHODS if unit.name != "ia3"], TRAINED_METHODS)
    with pytest.raises(TypeError, match="two method units serve lora"):
        Registry("method", [*METHODS, LORA], TRAINED_METHODS)
    with pytest.raises(TypeError, match=r"no variant for \['lora'\]"):
        Registry("method", [*METHODS], [name for name in TRAINED_METHODS if name != "lora"])


def test_an_unknown_type_is_a_config_error() -> None:
    assert "ppo" not in OBJECTIVES
    with pytest.raises(ConfigError, match="objective ppo is not available in this trainer; available: dpo, ipo, kto"):
        OBJECTIVES["ppo"]

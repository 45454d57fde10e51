"""Objectives: how it is trained. One unit per objective, registered in `OBJECTIVES` by its API `type`.

An objective's static facts (data formats, the model it trains, whether LwF can distil it) are
declared on its API variant (`kubetune.api.v1alpha1.objectives`); its unit here
(`unit.ObjectiveUnit`) builds a TRL trainer from a filled `RunContext` with `unit.trl_trainer`.
The pipeline, continual learning, checkpointing, artifacts and reporting need no change for a new
objective: add its API variant with its facts, one module here with its unit, and one entry below
(the registry refuses to build when a variant has no unit).
"""

from __future__ import annotations

from kubetune.api.v1alpha1.objectives import OBJECTIVE_FACTS
from kubetune_trainer.objectives.dpo import DPO, IPO
from kubetune_trainer.objectives.kto import KTO
from kubetune_trainer.objectives.orpo import ORPO
from kubetune_trainer.objectives.reward import REWARD
from kubetune_trainer.objectives.rlhf import RLHF
from kubetune_trainer.objectives.sft import SFT
from kubetune_trainer.objectives.unit import ObjectiveUnit
from kubetune_trainer.registry import Registry

OBJECTIVES = Registry[ObjectiveUnit]("objective", [SFT, DPO, IPO, KTO, ORPO, REWARD, RLHF], OBJECTIVE_FACTS)

__all__ = ["OBJECTIVES", "ObjectiveUnit"]

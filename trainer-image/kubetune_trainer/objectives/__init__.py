"""Objective registry: `objective.type` -> a builder that turns a filled `RunContext` into a Trainer.

One module per TRL trainer family. To add an objective, write `objectives/<name>.py` with a
`build(ctx: RunContext) -> transformers.Trainer` function and add one line to `OBJECTIVE_BUILDERS`
below; the pipeline, checkpointing, artifacts and reporting need no change.
"""

from __future__ import annotations

from kubetune_trainer.context import ObjectiveBuilder
from kubetune_trainer.continual import with_continual
from kubetune_trainer.objectives import dpo, kto, orpo, reward, rlhf, sft

# with_continual applies spec.continual (replay, EWC, LwF) around any builder; a no-op when unset
OBJECTIVE_BUILDERS: dict[str, ObjectiveBuilder] = {
    "sft": with_continual(sft.build),
    "dpo": with_continual(dpo.build),
    "ipo": with_continual(dpo.build),
    "kto": with_continual(kto.build),
    "orpo": with_continual(orpo.build),
    "reward": with_continual(reward.build),
    "rlhf": with_continual(rlhf.build),
}

__all__ = ["OBJECTIVE_BUILDERS"]

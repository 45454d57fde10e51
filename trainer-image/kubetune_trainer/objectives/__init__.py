"""Objective registry: `objective.type` -> a builder that turns a filled `RunContext` into a Trainer.

One module per TRL trainer family. To add an objective, write `objectives/<name>.py` with a
`build(ctx: RunContext) -> transformers.Trainer` function and add one line to `OBJECTIVE_BUILDERS`
below; the pipeline, checkpointing, artifacts and reporting need no change.
"""

from __future__ import annotations

from kubetune_trainer.context import ObjectiveBuilder
from kubetune_trainer.objectives import dpo, kto, orpo, reward, rlhf, sft

OBJECTIVE_BUILDERS: dict[str, ObjectiveBuilder] = {
    "sft": sft.build,
    "dpo": dpo.build,
    "ipo": dpo.build,
    "kto": kto.build,
    "orpo": orpo.build,
    "reward": reward.build,
    "rlhf": rlhf.build,
}

__all__ = ["OBJECTIVE_BUILDERS"]

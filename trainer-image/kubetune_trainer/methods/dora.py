"""DoRA: LoRA on the direction plus a learned magnitude per output (PEFT's `use_dora`)."""

from __future__ import annotations

from kubetune.api.v1alpha1.methods import DoraMethod
from kubetune_trainer.methods.lora import LoraUnit


class DoraUnit(LoraUnit):
    variant = DoraMethod
    use_dora = True


DORA = DoraUnit()

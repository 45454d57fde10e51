"""Methods: what is trained. One unit per method, registered in `METHODS` by its API `type`.

A method's static facts (family, mergeable, trains embeddings, fsdp) are declared on its API variant
(`kubetune.api.v1alpha1.methods`); its unit here (`unit.MethodUnit`) holds what the trainer does
with it, each hook at its stage of the pipeline: `machine_problem` in preflight, `check_targets` and
`memory` against the meta-device inspection (before any weights are read), `load_kwargs` in
`from_pretrained` (quantization happens at load time), `apply` after tokenizer alignment (so adapter
methods know which embedding rows are new). The formulas of full, lora, dora and qlora (the `auto`
candidates) are `kubetune.api.estimate.FORMULAS`, which `kubetune estimate` reads too.

Adding a method: its API variant with its facts, one module here with its unit, and one entry below
(the registry refuses to build when a variant has no unit).
"""

from __future__ import annotations

from kubetune.api.v1alpha1.methods import TRAINED_METHODS
from kubetune_trainer.methods.adapter import ADAPTER
from kubetune_trainer.methods.dora import DORA
from kubetune_trainer.methods.full import FULL
from kubetune_trainer.methods.ia3 import IA3
from kubetune_trainer.methods.lora import LORA
from kubetune_trainer.methods.partial import PARTIAL
from kubetune_trainer.methods.prefix import PREFIX
from kubetune_trainer.methods.prompt import PROMPT
from kubetune_trainer.methods.qlora import QLORA
from kubetune_trainer.methods.unit import MethodUnit
from kubetune_trainer.registry import Registry

METHODS = Registry[MethodUnit](
    "method", [FULL, PARTIAL, LORA, DORA, QLORA, ADAPTER, PREFIX, PROMPT, IA3], TRAINED_METHODS
)

__all__ = ["METHODS", "MethodUnit"]

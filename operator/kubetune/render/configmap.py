"""The ConfigMap that carries trainer.json (never a credential: those arrive as env from Secrets)."""

from __future__ import annotations

import json

from kubetune.api.v1alpha1.pod_contract import CONFIG_FILE
from kubetune.api.v1alpha1.trainer_config import TrainerConfig
from kubetune.render.meta import Manifest, Owner, metadata


def config_map(name: str, owner: Owner, config: TrainerConfig) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, owner, "config"),
        "data": {CONFIG_FILE: json.dumps(config.to_wire(), indent=2, sort_keys=True) + "\n"},
    }

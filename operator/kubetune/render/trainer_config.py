"""FineTuneJob + settings -> TrainerConfig: the one document the trainer reads.

Everything the trainer would otherwise have to guess (world size, launcher, where PVCs are
mounted, which env var holds the token) is decided here, once, so the pod's command line, the
volumes and the trainer's view can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, Literal

from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobSpec
from kubetune.api.v1alpha1.pod_contract import (
    CACHE_DIR,
    CHECKPOINT_DIR,
    MODEL_TOKEN_ENV,
    OUTPUT_TOKEN_ENV,
    PVC_ROOT,
    SCRATCH_DIR,
)
from kubetune.api.v1alpha1.trainer_config import RuntimeSettings, StatusTarget, TrainerConfig
from kubetune.api.v1alpha1.training import CHECKPOINTS_UNDER_OUTPUT
from kubetune.settings import OperatorSettings

Strategy = Literal["single", "ddp", "deepspeed", "fsdp"]


def checkpoint_storage(spec: FineTuneJobSpec) -> str:
    """`checkpointing.storage.uri`, or the folder next to the artifacts that shares their claim or bucket."""
    return spec.checkpointing.storage.uri or f"{spec.output.uri.rstrip('/')}/{CHECKPOINTS_UNDER_OUTPUT}/"


def checkpoint_uri(spec: FineTuneJobSpec, uid: str | None) -> str | None:
    """This run's durable checkpoints: one folder per FineTuneJob uid, so a re-created job with the same name
    never resumes from its predecessor. Without a uid (`kubetune render` or `kubetune run` of a file) there is
    no run to tie them to, and checkpoints stay in the pod's checkpoint directory."""
    if not uid:
        return None
    return f"{checkpoint_storage(spec).rstrip('/')}/{uid}/"


def resolve_runtime(spec: FineTuneJobSpec, settings: OperatorSettings, uid: str | None = None) -> RuntimeSettings:
    """Strategy and launcher from the spec: one process per GPU, torchrun across nodes.

    The DeepSpeed launcher needs ssh between nodes, so it is only used on a single node; across
    nodes torchrun starts the processes and DeepSpeed reads the rendezvous from its environment.
    """
    nodes = spec.resources.nodes
    per_node = spec.resources.processes_per_node
    world = spec.resources.world_size
    strategy: Strategy
    requested = spec.distributed.strategy
    if requested == "auto":
        if world == 1:
            strategy = "single"
        elif spec.method.type == "full":
            strategy = "deepspeed"
        else:
            strategy = "ddp"
    elif requested == "ddp" and world == 1:
        strategy = "single"
    else:
        strategy = requested
    if strategy == "single":
        launcher = "python"
    elif strategy == "deepspeed" and nodes == 1 and spec.resources.gpus >= 1:
        launcher = "deepspeed"
    else:
        launcher = "torchrun"
    return RuntimeSettings(
        strategy=strategy,
        launcher=launcher,
        nodes=nodes,
        processes_per_node=per_node,
        world_size=world,
        cache_dir=CACHE_DIR,
        work_dir=SCRATCH_DIR,
        checkpoint_dir=CHECKPOINT_DIR,
        checkpoint_uri=checkpoint_uri(spec, uid),
        termination_grace_seconds=settings.termination_grace_seconds,
        pvc_mount_root=PVC_ROOT,
        metrics_port=settings.trainer_metrics_port,
        progress_interval_seconds=settings.progress_interval_seconds,
        report_status=True,
        model_token_env=MODEL_TOKEN_ENV if spec.base_model.credentials_secret_ref else None,
        output_token_env=OUTPUT_TOKEN_ENV if spec.output.credentials_secret_ref else None,
    )


def writable_uris(spec: FineTuneJobSpec) -> tuple[str, ...]:
    """Where the trainer writes: the output, the checkpoint storage, and a TensorBoard log directory."""
    tensorboard = spec.tracking.tensorboard if spec.tracking is not None else None
    log_dir = tensorboard.log_dir if tensorboard is not None else None
    return (spec.output.uri, checkpoint_storage(spec), *([log_dir] if log_dir else []))


def trainer_config(
    ftj: FineTuneJob, settings: OperatorSettings, adapters: Mapping[str, str] | None = None
) -> TrainerConfig:
    """`adapters`: the artifact URIs of the Adapters the spec names, by name (the cluster knows them;
    `kubetune render` of a file does not, and then the trainer says which one it lacks)."""
    return TrainerConfig(
        mode="train",
        target=StatusTarget(
            kind="FineTuneJob", namespace=ftj.metadata.namespace or "default", name=ftj.metadata.name or ""
        ),
        job=ftj.spec,
        runtime=resolve_runtime(ftj.spec, settings, ftj.metadata.uid),
        adapters=dict(sorted(adapters.items())) if adapters else None,
    )


def trainer_json(config: TrainerConfig) -> str:
    """trainer.json as the pod sees it (never a credential: those arrive as env from Secrets)."""
    return json.dumps(config.to_wire(), indent=2, sort_keys=True) + "\n"


def pvc_claims(document: Any, writable_uris: Collection[str] = ()) -> dict[str, bool]:
    """Every `pvc://CLAIM/...` URI in a wire document -> {claim: writable}; only the claims of `writable_uris`
    (the output, the checkpoint storage, a TensorBoard log directory) are writable."""
    claims: dict[str, bool] = {}
    writable = {uri.removeprefix("pvc://").split("/", 1)[0] for uri in writable_uris if uri.startswith("pvc://")}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith("pvc://"):
            claim = node.removeprefix("pvc://").split("/", 1)[0]
            claims[claim] = claim in writable

    walk([document, *writable_uris])
    return dict(sorted(claims.items()))

"""The contract between the operator and the pods it runs, written once for both sides.

The operator renders these names into Jobs and pods and reads them back from pods and status; the
trainer (which may import only `kubetune.api`) finds its config, mounts and environment by them and
writes its status fields under its own field manager. Changing a value here changes both sides.
"""

from __future__ import annotations

from kubetune.api.resources import GROUP

TRAINER_CONTAINER = "trainer"
"""The container that runs the trainer (or the merge); the pod failure policy and status read its exit code
(`trainer_config.CONFIG_ERROR_EXIT_CODE` for bad configuration or data)."""

OPERATOR_FIELD_MANAGER = "kubetune-operator"
"""Field manager of everything the operator applies; also its Events' reporting component and the
`app.kubernetes.io/managed-by` value of its children."""
TRAINER_FIELD_MANAGER = "kubetune-trainer"
"""Field manager of the trainer's status writes (server-side apply on the status subresource)."""
TRAINER_SERVICE_ACCOUNT = "kubetune-trainer"
"""The namespace's shared trainer identity (ServiceAccount, Role, RoleBinding). The chart's ValidatingAdmissionPolicy
matches this name: a token of it writes only the status of the run whose Job its pod belongs to."""
FINETUNEJOB_TRAINER_FIELDS = ("progress", "result")
"""FineTuneJob status fields only the trainer writes; the operator writes every other status field."""
ADAPTER_TRAINER_FIELDS = ("artifact",)
"""Adapter status fields the trainer writes for a merged Adapter (merge mode); the operator writes the rest."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
JOB_LABEL = f"{GROUP}/job"
"""On every child of a FineTuneJob (and its pods): the owner's name as a label value."""
ADAPTER_LABEL = f"{GROUP}/adapter"
"""On every child of a merged Adapter (and its pods): the owner's name as a label value."""
BASE_MODEL_LABEL = f"{GROUP}/base-model"
"""On a published Adapter: its base model, to select adapters by base."""
OWNER_ANNOTATION = f"{GROUP}/owner"
"""KIND/NAME of the owning kubetune object, so Job and pod events map back to it without a lookup."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on its pods: selects a run's pods and the rendezvous Service's endpoints."""
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
"""Set by the Job controller on the pods of an Indexed Job: the node rank of a multi-node run."""

PREFLIGHT_FLAG = "--preflight"
"""Trainer argument of the preflight pod: check the spec in `trainer.json` (the training pods' own), download
only config and tokenizer files, and write a `preflight.PreflightReport` as the termination message."""
PREFLIGHT_COMPONENT = "preflight"
"""`app.kubernetes.io/component` of the preflight Job and its pod (the training pods' is TRAINER_COMPONENT)."""
TRAINER_COMPONENT = "trainer"

CONFIG_DIR = "/etc/kubetune"
CONFIG_FILE = "trainer.json"
"""The TrainerConfig at CONFIG_DIR/CONFIG_FILE, a downward-API file of the pod's CONFIG_ANNOTATION."""
CONFIG_ANNOTATION = f"{GROUP}/trainer-config"
"""On the Job's pod template: the TrainerConfig JSON, so a run needs no ConfigMap (one write less)."""
CACHE_DIR = "/var/cache/kubetune"
SCRATCH_DIR = "/scratch"
CHECKPOINT_DIR = f"{SCRATCH_DIR}/checkpoints"
"""Where the trainer writes checkpoints in the pod; each one is then copied to the durable storage
(`checkpointing.storage`), which is what a replacement pod resumes from."""
PVC_ROOT = "/mnt/pvc"
"""Each claim named in a `pvc://CLAIM/...` URI is mounted at PVC_ROOT/CLAIM."""
TRAINER_METRICS_PORT = 9400
"""Default port of the trainer's `/metrics` (the `metrics` container port)."""

MODEL_TOKEN_ENV = "KUBETUNE_MODEL_TOKEN"
"""Holds the base model credential (from the Secret in baseModel.credentialsSecretRef)."""
OUTPUT_TOKEN_ENV = "KUBETUNE_OUTPUT_TOKEN"
"""Holds the Hub token for an hf:// output (from the Secret in output.credentialsSecretRef)."""
TERMINATION_LOG_ENV = "KUBETUNE_TERMINATION_LOG"
"""Where the trainer writes its one-line failure reason or its result (default: the pod's /dev/termination-log)."""
RESULT_MESSAGE_PREFIX = "kubetune-result: "
"""A successful trainer's termination message is this prefix and `status.result` as compact JSON (under the
kubelet's 4 KiB limit): the operator recovers the result from it when the trainer's status write never landed."""
TERMINATION_MESSAGE_LIMIT = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""

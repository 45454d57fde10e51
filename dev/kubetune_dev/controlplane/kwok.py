"""kwok configuration: which stages run, the fake GPU nodes, and the pod-outcome convention.

kwok plays kubelet for fake nodes. The standalone binary has no default stages, so we assemble them: kwok's
own ``node/fast`` initialize, ``node/heartbeat-with-lease``, ``pod/fast`` ready and delete, and our own
completion stages below instead of kwok's ``pod/fast/pod-complete`` (which can only succeed Job pods at once).

Pod-outcome convention (annotations on the pod, usually set in a Job's ``spec.template.metadata``):

``kwok.kubetune.io/exit-code: "<int>"``
    Once the pod is Running, every container terminates with this exit code. ``"0"`` gives phase
    Succeeded (reason Completed); anything else gives phase Failed (reason Error) with that ``exitCode``,
    so a Job ``podFailurePolicy`` on exit codes can be exercised. Works for bare pods too.
``kwok.kubetune.io/run-for: "<duration>"``
    How long the pod stays Running before it terminates: a Go duration (``"30s"``, ``"2m"``) or an RFC 3339
    time to finish at. Default: no delay.
``kwok.kubetune.io/keep-running: "true"``
    The pod never terminates (a hung trainer); it wins over the two annotations above.
No annotation
    A pod owned by a Job succeeds with exit code 0 as soon as it is Running (kwokctl's default
    behaviour); a bare pod stays Running until deleted.

A kubetune preflight pod (label ``app.kubernetes.io/component: preflight``) ignores the annotations above,
so one FineTuneJob's annotations can steer its preflight and its trainers apart:

``kwok.kubetune.io/preflight-exit-code: "<int>"``
    The preflight container fails with this exit code (default: it succeeds with 0).
``kwok.kubetune.io/preflight-message: "<text>"``
    Its termination message (the preflight report, or the trainer's one-line config error).
``kwok.kubetune.io/preflight-run-for: "<duration>"``
    How long it runs first.

Pods should use ``restartPolicy: Never``: nothing restarts a Failed fake container.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ANNOTATION_EXIT_CODE = "kwok.kubetune.io/exit-code"
ANNOTATION_RUN_FOR = "kwok.kubetune.io/run-for"
ANNOTATION_KEEP_RUNNING = "kwok.kubetune.io/keep-running"
ANNOTATION_PREFLIGHT_EXIT_CODE = "kwok.kubetune.io/preflight-exit-code"
ANNOTATION_PREFLIGHT_MESSAGE = "kwok.kubetune.io/preflight-message"
ANNOTATION_PREFLIGHT_RUN_FOR = "kwok.kubetune.io/preflight-run-for"
COMPONENT = '.metadata.labels["app.kubernetes.io/component"]'

# Nodes kwok manages carry this annotation (kwok's own convention); other nodes are left alone.
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_NODE_COUNT = 2
GPUS_PER_NODE = 8
NODE_CPU = 32
NODE_MEMORY_GI = 256

_UPSTREAM_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
)


def _annotation(key: str) -> str:
    return f'.metadata.annotations["{key}"]'


def _terminated_status(exit_code: str, reason: str, phase: str, message_annotation: str | None = None) -> str:
    # Same shape as kwok's pod/fast/pod-complete.yaml, with the exit code, reason and phase parameterised.
    message = ""
    if message_annotation:  # a line only when the pod carries the annotation
        message = f'{{{{ with index $.metadata.annotations "{message_annotation}" }}}}'
        message += "      message: {{ . | Quote }}\n{{ end }}"
    return (
        "{{ $now := Now }}\n"
        "containerStatuses:\n"
        "{{ range .spec.containers }}\n"
        "- image: {{ .image | Quote }}\n"
        "  name: {{ .name | Quote }}\n"
        "  ready: false\n"
        "  restartCount: 0\n"
        "  started: false\n"
        "  state:\n"
        "    terminated:\n"
        f"      exitCode: {exit_code}\n"
        f"{message}"
        "      finishedAt: {{ $now | Quote }}\n"
        f"      reason: {reason}\n"
        "      startedAt: {{ $now | Quote }}\n"
        "{{ end }}\n"
        "conditions:\n"
        "- lastTransitionTime: {{ $now | Quote }}\n"
        '  status: "False"\n'
        "  type: Ready\n"
        "  reason: PodCompleted\n"
        "- lastTransitionTime: {{ $now | Quote }}\n"
        '  status: "False"\n'
        "  type: ContainersReady\n"
        "  reason: PodCompleted\n"
        f"phase: {phase}\n"
    )


def _finish_stage(
    name: str, extra: list[dict[str, Any]], status_template: str, run_for: str = ANNOTATION_RUN_FOR
) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                    *extra,
                ]
            },
            "delay": {
                "durationMilliseconds": 0,
                "durationFrom": {"expressionFrom": _annotation(run_for)},
            },
            "next": {"statusTemplate": status_template},
        },
    }


def outcome_stages() -> list[dict[str, Any]]:
    """Selectors are ANDed, so "Job pod without exit-code OR exit-code 0" needs two stages."""
    exit_code = _annotation(ANNOTATION_EXIT_CODE)
    trainer: list[dict[str, Any]] = [
        {"key": COMPONENT, "operator": "NotIn", "values": ["preflight"]},
        {"key": _annotation(ANNOTATION_KEEP_RUNNING), "operator": "DoesNotExist"},
    ]
    return [
        _finish_stage(
            "kubetune-pod-job-default-succeed",
            [
                *trainer,
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
                {"key": exit_code, "operator": "DoesNotExist"},
            ],
            _terminated_status("0", "Completed", "Succeeded"),
        ),
        _finish_stage(
            "kubetune-pod-exit-zero",
            [*trainer, {"key": exit_code, "operator": "In", "values": ["0"]}],
            _terminated_status("0", "Completed", "Succeeded"),
        ),
        _finish_stage(
            "kubetune-pod-exit-nonzero",
            [
                *trainer,
                {"key": exit_code, "operator": "Exists"},
                {"key": exit_code, "operator": "NotIn", "values": ["0"]},
            ],
            _terminated_status(
                # Inside range the dot is the container, so reach the pod through $.
                '{{ index $.metadata.annotations "' + ANNOTATION_EXIT_CODE + '" }}',
                "Error",
                "Failed",
            ),
        ),
        *preflight_stages(),
    ]


def preflight_stages() -> list[dict[str, Any]]:
    """A preflight pod succeeds (with its report as the termination message) unless told to fail."""
    exit_code = _annotation(ANNOTATION_PREFLIGHT_EXIT_CODE)
    preflight = {"key": COMPONENT, "operator": "In", "values": ["preflight"]}
    return [
        _finish_stage(
            "kubetune-preflight-succeed",
            [preflight, {"key": exit_code, "operator": "DoesNotExist"}],
            _terminated_status("0", "Completed", "Succeeded", ANNOTATION_PREFLIGHT_MESSAGE),
            ANNOTATION_PREFLIGHT_RUN_FOR,
        ),
        _finish_stage(
            "kubetune-preflight-fail",
            [preflight, {"key": exit_code, "operator": "Exists"}],
            _terminated_status(
                '{{ index $.metadata.annotations "' + ANNOTATION_PREFLIGHT_EXIT_CODE + '" }}',
                "Error",
                "Failed",
                ANNOTATION_PREFLIGHT_MESSAGE,
            ),
            ANNOTATION_PREFLIGHT_RUN_FOR,
        ),
    ]


def write_kwok_config(path: Path, upstream_stage_dir: Path) -> Path:
    docs: list[str] = [(upstream_stage_dir / rel).read_text() for rel in _UPSTREAM_STAGES]
    docs.extend(yaml.safe_dump(stage, sort_keys=False) for stage in outcome_stages())
    path.write_text("\n---\n".join(doc.strip() for doc in docs) + "\n")
    return path


def gpu_node(index: int) -> dict[str, Any]:
    """kwok's node-initialize stage keeps a capacity we supply and only fills defaults when absent."""
    name = f"kwok-gpu-{index}"
    resources = {
        "cpu": str(NODE_CPU),
        "memory": f"{NODE_MEMORY_GI}Gi",
        "pods": "110",
        GPU_RESOURCE: str(GPUS_PER_NODE),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                GPU_PRODUCT_LABEL: GPU_PRODUCT,
            },
        },
        "spec": {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def gpu_nodes() -> list[dict[str, Any]]:
    return [gpu_node(i) for i in range(GPU_NODE_COUNT)]

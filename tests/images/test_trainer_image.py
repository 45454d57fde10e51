"""The built trainer image (`make image-trainer`) trains the demo's tiny model the way a pod runs it.

The FineTuneJob is `examples/demo-tiny-lora.yaml`, rendered by the operator's own render functions: the
container runs as the pod's runAsUser with the image's entrypoint and the rendered arguments, every volume
of the rendered pod is mounted where the pod mounts it (trainer.json from the pod annotation, read-only, the
PVC with the tiny model, the emptyDirs), and the env is the container's. The only edits to the rendered
TrainerConfig are the ones that need a cluster: no status patching (no API server) and a free metrics port.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.api.v1alpha1.pod_contract import (
    COMPONENT_LABEL,
    CONFIG_ANNOTATION,
    CONFIG_DIR,
    CONFIG_FILE,
    TRAINER_COMPONENT,
)
from kubetune.render.bundle import render_bundle
from kubetune.settings import OperatorSettings
from support.images import REPO, TRAINER_IMAGE, VERSION, Mount, Run, locked_versions, require_image, run_in_image

DEMO = REPO / "examples" / "demo-tiny-lora.yaml"
ARTIFACT_LINE = re.compile(r"artifact (\S+) sha256 ([0-9a-f]{64}) \((\d+) bytes\)")


@dataclass(frozen=True)
class Rendered:
    job: dict[str, Any]
    trainer_config: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.job["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return dict(container)

    @property
    def user(self) -> str:
        context = self.pod["securityContext"]
        return f"{context['runAsUser']}:{context['runAsGroup']}"


@dataclass(frozen=True)
class TrainedInImage:
    rendered: Rendered
    result: subprocess.CompletedProcess[str]
    claims: dict[str, Path]


def render_demo(document: dict[str, Any] | None = None) -> Rendered:
    manifests = render_bundle(document or yaml.safe_load(DEMO.read_text()), OperatorSettings())
    (job,) = [
        m for m in manifests if m["kind"] == "Job" and m["metadata"]["labels"][COMPONENT_LABEL] == TRAINER_COMPONENT
    ]
    return Rendered(job, json.loads(job["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pod_mounts(rendered: Rendered, root: Path, claims: dict[str, Path], config: dict[str, Any]) -> list[Mount]:
    """Host directories for the rendered pod's volumes, owned by the pod's user as fsGroup would make them."""
    uid, gid = (int(x) for x in rendered.user.split(":"))
    sources: dict[str, Path] = {}
    for volume in rendered.pod["volumes"]:
        name = volume["name"]
        if "downwardAPI" in volume:
            (item,) = volume["downwardAPI"]["items"]
            assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{CONFIG_ANNOTATION}']"
            sources[name] = root / name
            sources[name].mkdir()
            (sources[name] / item["path"]).write_text(json.dumps(config))
        elif "persistentVolumeClaim" in volume:
            sources[name] = claims[volume["persistentVolumeClaim"]["claimName"]]
        else:
            assert "emptyDir" in volume, f"volume {name}: the test knows downwardAPI, PVC and emptyDir only"
            sources[name] = root / name
            sources[name].mkdir()
    for source in sources.values():
        for path in [source, *source.rglob("*")]:
            os.chown(path, uid, gid)
    return [
        Mount(str(sources[m["name"]]), m["mountPath"], read_only=m.get("readOnly", False))
        for m in rendered.container["volumeMounts"]
    ]


def container_env(rendered: Rendered) -> dict[str, str]:
    """The container's env; the downward API fields get the values a kubelet would fill in."""
    metadata = rendered.job["metadata"]
    field_values = {"metadata.name": f"{metadata['name']}-0", "metadata.namespace": metadata["namespace"]}
    env = {}
    for item in rendered.container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = field_values[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.fixture(scope="module")
def image_config() -> dict[str, Any]:
    return require_image(TRAINER_IMAGE, "image-trainer")


def train_in_image(
    root: Path, document: dict[str, Any] | None = None, launched: dict[str, str] | None = None
) -> TrainedInImage:
    """Render `document` (default: the demo) and run its trainer pod in the image on the demo's PVC; `launched`
    runs the trainer module directly with that env (what a launcher gives the process) instead of the command."""
    os.chmod(root, 0o755)
    claim = root / "claim-demo-data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetune_dev.tiny",
            "--model",
            str(claim / "models" / "tiny-llama"),
            "--data",
            str(claim / "datasets" / "counting.jsonl"),
        ],
        check=True,
        capture_output=True,
    )
    rendered = render_demo(document)
    config = rendered.trainer_config
    config["runtime"] |= {"reportStatus": False, "metricsPort": free_port()}
    claims = {"demo-data": claim}
    pod_name = container_env(rendered)["POD_NAME"]
    hosts = root / "etc-hosts"  # the kubelet's /etc/hosts of every pod: its own name resolves (torchrun needs it)
    hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{pod_name}\n")
    run = Run(
        command=rendered.container["command"] if launched is None else ["python", *rendered.container["command"][-4:]],
        user=rendered.user,
        mounts=[*pod_mounts(rendered, root, claims, config), Mount(str(hosts), "/etc/hosts", read_only=True)],
        env=container_env(rendered) | (launched or {}),
        hostname=pod_name,
    )
    return TrainedInImage(rendered, run_in_image(TRAINER_IMAGE, run, timeout=900), claims)


@pytest.fixture(scope="module")
def trained(image_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> TrainedInImage:
    return train_in_image(tmp_path_factory.mktemp("trainer-image"))


def test_image_runs_as_the_rendered_user_with_the_rendered_command(image_config: dict[str, Any]) -> None:
    rendered = render_demo()
    assert image_config["User"] == rendered.user
    assert [*image_config["Entrypoint"], "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"] == rendered.container["command"]


def test_image_exposes_the_rendered_ports_and_carries_oci_labels(image_config: dict[str, Any]) -> None:
    settings = OperatorSettings()
    assert set(image_config["ExposedPorts"]) == {
        f"{settings.trainer_metrics_port}/tcp",
        f"{settings.rendezvous_port}/tcp",
    }
    labels = image_config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "kubetune-trainer"
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])


def test_trains_the_demo_model_and_publishes_its_artifact(trained: TrainedInImage) -> None:
    from kubetune_trainer.artifacts import tree_digest

    result = trained.result
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    found = ARTIFACT_LINE.search(result.stdout)
    assert found, result.stdout[-2000:]
    uri, sha256, size = found.group(1), found.group(2), int(found.group(3))
    assert uri.startswith("pvc://demo-data/adapters/")
    artifact = trained.claims["demo-data"] / uri.removeprefix("pvc://demo-data/").strip("/")
    assert {"adapter_model.safetensors", "adapter_config.json", "kubetune.json"} <= {p.name for p in artifact.iterdir()}
    assert tree_digest(artifact) == (sha256, size)
    uid = int(trained.rendered.user.split(":")[0])
    assert {p.stat().st_uid for p in artifact.rglob("*")} == {uid}, "written by the pod's user, not root"
    manifest = json.loads((artifact / "kubetune.json").read_text())
    assert manifest["method"]["resolved"] == "lora"
    assert manifest["gate"]["passed"] is True
    assert manifest["metrics"]["heldout.perplexity"] < 400


def test_trains_with_exactly_the_locked_libraries(trained: TrainedInImage) -> None:
    found = ARTIFACT_LINE.search(trained.result.stdout)
    assert found, trained.result.stdout[-2000:] + trained.result.stderr[-2000:]
    artifact = trained.claims["demo-data"] / found.group(1).removeprefix("pvc://demo-data/").strip("/")
    libraries = json.loads((artifact / "kubetune.json").read_text())["libraries"]
    locked = locked_versions()
    assert libraries.pop("kubetune") == VERSION
    assert libraries == {name: locked[name] for name in libraries}
    assert {"torch", "transformers", "peft", "trl", "deepspeed"} <= set(libraries)


TORCH_BUILD = """
import torch
print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torch.cuda.nccl.version())
print(torch._C._cuda_getArchFlags())
"""
LOAD_DEEPSPEED_OPS = """
from deepspeed.ops.op_builder.cpu import CPUAdamBuilder
from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder
ShareMemCommBuilder().load()
CPUAdamBuilder().load()
print("loaded")
"""


def test_ships_torch_built_for_cuda_13_0_with_its_runtime_libraries(image_config: dict[str, Any]) -> None:
    result = run_in_image(TRAINER_IMAGE, Run(command=["python", "-c", TORCH_BUILD]), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    versions, arches = result.stdout.strip().splitlines()
    assert versions == f"{locked_versions()['torch']}+cu130 13.0 92000 (2, 29, 7)"
    assert arches.split() == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def test_prebuilt_deepspeed_ops_load_without_a_compiler(image_config: dict[str, Any]) -> None:
    """g++ is in the image for recompiles only: with every C++ compiler removed the prebuilt ops still load.

    Runs as root, which may write torch's lock file next to the prebuilt ops (the pod user uses a copy, next test).
    """
    remove_compilers = "rm -f /usr/bin/c++ /usr/bin/g++ /usr/bin/g++-12 /usr/bin/x86_64-linux-gnu-g++-12"
    script = f"{remove_compilers} && ! command -v c++ g++ && python -c '{LOAD_DEEPSPEED_OPS}'"
    result = run_in_image(
        TRAINER_IMAGE, Run(command=["sh", "-c", script], user="0:0", env={"DS_ACCELERATOR": "cpu"}), timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith("loaded")
    assert "Building extension" not in result.stdout + result.stderr


def test_a_deepspeed_run_loads_the_prebuilt_ops_as_the_image_user(image_config: dict[str, Any], tmp_path: Path) -> None:
    """The image's ops dir is root's (and read-only in a pod): the trainer copies it into scratch, and DeepSpeed
    on CPU (its shared-memory comm op) loads the copy without recompiling.

    The rendered command is `torchrun --standalone` (under the `kubetune_trainer.launch` wrapper), whose
    rendezvous never completes inside buildah's chroot isolation (it does in pods on the local node:
    tests/e2e/test_multinode.py); the trainer is started as the one process torchrun would start, with the
    rendezvous variables torchrun sets.
    """
    document = yaml.safe_load(DEMO.read_text())
    document["spec"]["distributed"] = {"strategy": "deepspeed", "zeroStage": 2}
    document["spec"]["training"]["maxSteps"] = 4
    document["spec"]["evaluation"] = {}
    launched = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    trained = train_in_image(tmp_path, document, launched | {"MASTER_PORT": str(free_port())})
    result = trained.result
    output = result.stdout + result.stderr
    command = trained.rendered.container["command"]
    assert command[:4] == ["python", "-m", "kubetune_trainer.launch", "--"], "the launcher runs under the wrapper"
    assert command[4:6] == ["torchrun", "--standalone"]
    assert result.returncode == 0, output[-4000:]
    assert "prebuilt torch extensions in /opt/kubetune/torch_extensions are read-only here" in output
    assert "deepspeed_shm_comm_op built successfully" in output, "DeepSpeed loaded its shared-memory comm op"
    assert "Building extension" not in output, "the copied ops were recompiled"
    found = ARTIFACT_LINE.search(result.stdout)
    assert found, output[-2000:]
    artifact = trained.claims["demo-data"] / found.group(1).removeprefix("pvc://demo-data/").strip("/")
    manifest = json.loads((artifact / "kubetune.json").read_text())
    assert manifest["config"]["runtime"]["strategy"] == "deepspeed"

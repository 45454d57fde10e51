"""`make demo`: the main job, end to end, on this machine.

Starts the local control plane (Tier B), installs the CRDs, starts a local node that really runs
pods, starts the operator, seeds a PVC with a tiny model and a learnable toy dataset, applies
`examples/demo-tiny-lora.yaml`, prints live progress from `status`, and finishes with the published
Adapter. Everything runs on loopback and is stopped by PID at the end (`--keep` leaves it running).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as kube_config

from kubetune.labs.cluster import progress_line
from kubetune_dev.controlplane import LocalControlPlane, Tier
from kubetune_dev.controlplane.paths import cache_dir, find_kubectl
from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.local_node.agent import LocalNode
from kubetune_dev.local_node.pods import NodeRuntime
from kubetune_dev.operator_identity import install_trainer_policy

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "examples" / "demo-tiny-lora.yaml"
NAMESPACE = "demo"
CLAIM = "demo-data"
NODE_NAME = "kubetune-local"
TERMINAL = ("Succeeded", "Failed")


@dataclass
class DemoResult:
    finetunejob: dict[str, Any]
    adapter: dict[str, Any] | None
    claim_dir: Path


def trainer_image_env() -> dict[str, str]:
    """The trainer image's ENV that matters on this machine: its prebuilt DeepSpeed ops (`make deepspeed-ops`)."""
    extensions = os.environ.get("TORCH_EXTENSIONS_DIR") or str(cache_dir() / "torch_extensions")
    return {"TORCH_EXTENSIONS_DIR": extensions, "HF_HUB_DISABLE_TELEMETRY": "1"}


def say(step: str) -> None:
    print(f"==> {step}", flush=True)


class Demo:
    """Owns every process it starts; `close()` stops them by PID."""

    def __init__(
        self,
        workdir: Path,
        log: Callable[[str], None] = say,
        *,
        node_gpus: int = 0,
        operator_env: dict[str, str] | None = None,
        image_env: dict[str, str] | None = None,
        kueue: bool = False,
    ) -> None:
        """`node_gpus`, `operator_env`, `image_env` (added to `trainer_image_env()`) and `kueue` are for runs beyond
        the demo's: multi-node tests need fake GPUs to schedule on and free rendezvous ports, benchmarks vary the
        env, queued runs need the Kueue manager in the control plane."""
        self.workdir = workdir
        self.log = log
        self.plane = LocalControlPlane(workdir / "control-plane")
        self.node: LocalNode | None = None
        self.node_gpus = node_gpus
        self.operator: subprocess.Popen[bytes] | None = None
        self.operator_env = operator_env or {}
        self.image_env = {**trainer_image_env(), **(image_env or {})}
        self.metrics_port = free_ports(1)[0]
        self.kueue = kueue

    @property
    def claim_dir(self) -> Path:
        return self.claim_folder(CLAIM)

    def claim_folder(self, claim: str) -> Path:
        """Where the local node keeps PVC `claim` of the demo namespace (what its pods see)."""
        return self.workdir / "local-node" / "claims" / NAMESPACE / claim

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = [str(find_kubectl()), "--kubeconfig", str(self.plane.kubeconfig_path), *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        self.log("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
        self.plane.start(Tier.B, kueue=self.kueue)
        self.log(f"control plane ready; kubeconfig: {self.plane.kubeconfig_path}")
        self.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.log("CRDs installed: finetunejobs.kubetune.io, adapters.kubetune.io")
        policy = install_trainer_policy(self.plane)[0]["metadata"]["name"]
        self.log(f"the chart's ValidatingAdmissionPolicy {policy}: one trainer identity per namespace, confined")
        self._start_node()
        self._seed_storage()
        self._start_operator()

    def _start_node(self) -> None:
        api = kube_config.new_client_from_config(str(self.plane.kubeconfig_path))  # type: ignore[no-untyped-call]
        host, port = self.plane.api_url.removeprefix("https://").rsplit(":", 1)
        runtime = NodeRuntime(
            api_host=host,
            api_port=int(port),
            bin_dir=Path(sys.executable).parent,
            root=self.workdir / "local-node",
            image_env=self.image_env,
        )
        self.node = LocalNode(api, NODE_NAME, runtime, gpus=self.node_gpus)
        self.node.start()
        self.log(f"local node {NODE_NAME} registered: pods bound to it run as local processes")

    def _seed_storage(self) -> None:
        self.kubectl("create", "namespace", NAMESPACE)
        self.add_claim(CLAIM)
        self.log(f"building a tiny Llama and a toy dataset into PVC {CLAIM} ({self.claim_dir})")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kubetune_dev.tiny",
                "--model",
                str(self.claim_dir / "models" / "tiny-llama"),
                "--data",
                str(self.claim_dir / "datasets" / "counting.jsonl"),
            ],
            check=True,
        )

    def add_claim(self, name: str) -> Path:
        """A bound PVC `name` in the demo namespace; returns the folder its pods see (the local node's claim)."""
        folder = self.claim_folder(name)
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{NAMESPACE}-{name}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": str(folder)},
                "claimRef": {"namespace": NAMESPACE, "name": name},
            },
        }
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume["metadata"]["name"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([volume, claim]))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _start_operator(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.kubeconfig_path),
            "KUBETUNE_TRAINER_IMAGE": "kubetune-trainer:local",
            "KUBETUNE_METRICS_PORT": str(self.metrics_port),
            "KUBETUNE_RESYNC_SECONDS": "5",
            **self.operator_env,
        }
        log = (self.workdir / "operator.log").open("ab")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "kubetune.cli", "operator", "--standalone", "-n", NAMESPACE],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.log(
            f"operator started (pid {self.operator.pid}, log {self.workdir / 'operator.log'}, "
            f"metrics http://127.0.0.1:{self.metrics_port}/metrics)"
        )

    def crash_operator(self) -> None:
        """SIGKILLs the operator (between any two of its API calls, as the OOM killer or a lost node would) and
        starts a new one, as its Deployment would."""
        assert self.operator is not None
        self.operator.kill()
        self.operator.wait(timeout=20)
        self.log(f"operator SIGKILLed (pid {self.operator.pid})")
        self._start_operator()

    def run(self, timeout: float = 900) -> DemoResult:
        self.log(f"kubectl apply -f {MANIFEST.relative_to(REPO)}")
        return self.train(yaml.safe_load(MANIFEST.read_text()), timeout)

    def train(self, finetunejob: dict[str, Any], timeout: float = 900) -> DemoResult:
        """Apply a FineTuneJob and follow its status until it succeeds or fails; returns it and its Adapter."""
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(finetunejob))
        name = finetunejob["metadata"]["name"]
        deadline = time.monotonic() + timeout
        last = ""
        ftj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            ftj = yaml.safe_load(self.kubectl("get", "ftj", name, "-n", NAMESPACE, "-o", "yaml"))
            line = progress_line(ftj)
            if line != last:
                self.log(line)
                last = line
            if ftj.get("status", {}).get("phase") in TERMINAL:
                break
            if self.operator is not None and self.operator.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with {self.operator.returncode}; see {self.workdir}/operator.log"
                )
            time.sleep(2)
        else:
            raise TimeoutError(f"FineTuneJob {name} did not finish within {timeout:.0f}s: {last}")
        adapter = self._wait_adapter(ftj) if ftj["status"]["phase"] == "Succeeded" else None
        print(self.kubectl("get", "ftj,adp", "-n", NAMESPACE), flush=True)
        return DemoResult(ftj, adapter, self.claim_dir)

    def _wait_adapter(self, ftj: dict[str, Any], timeout: float = 60) -> dict[str, Any] | None:
        name = ftj["spec"]["output"].get("adapterName") or ftj["metadata"]["name"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.kubectl("get", "adp", "-n", NAMESPACE, "--ignore-not-found", "-o", "yaml", name)
            if found.strip():
                adapter: dict[str, Any] = yaml.safe_load(found)
                if adapter.get("status", {}).get("phase") in ("Ready", "Failed"):
                    return adapter
            time.sleep(1)
        return None

    def __enter__(self) -> Demo:
        """`with Demo(...) as demo:` starts everything and stops it again, also when starting fails."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
        if self.node is not None:
            self.node.stop()
        self.plane.stop()


def summarize(result: DemoResult) -> int:
    status = result.finetunejob.get("status", {})
    if status.get("phase") != "Succeeded":
        say(f"FineTuneJob failed: {status.get('reason')}: {status.get('message')}")
        return 1
    outcome = status.get("result", {})
    say(f"trained: metrics {outcome.get('metrics')}, gate passed: {outcome.get('gatePassed')}")
    if result.adapter is None:
        say("no Adapter was published")
        return 1
    artifact = result.adapter["spec"].get("artifact", {})
    say(
        f"Adapter {result.adapter['metadata']['name']}: {artifact.get('uri')} "
        f"({artifact.get('sizeBytes')} bytes, sha256 {str(artifact.get('sha256'))[:19]}...)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=REPO / ".kubetune" / "demo")
    parser.add_argument("--keep", action="store_true", help="leave everything running (stop with Ctrl-C)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    demo = Demo(args.workdir)
    try:
        demo.start()
        code = summarize(demo.run())
        if args.keep:
            say(f"still running; KUBECONFIG={demo.plane.kubeconfig_path}; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        say("stopping the operator, the local node and the control plane")
        demo.close()


if __name__ == "__main__":
    sys.exit(main())

"""The local node without a control plane: mount planning, `$(VAR)` expansion, the per-pod hosts file, images it
knows, signals to a frozen pod."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from kubetune_dev.controlplane.testing import wait_until
from kubetune_dev.local_node import process
from kubetune_dev.local_node.agent import FrozenPod
from kubetune_dev.local_node.expansion import expand
from kubetune_dev.local_node.hosts import PodDns, dns_names, headless_selectors, hosts_file
from kubetune_dev.local_node.images import (
    KNOWN_IMAGES,
    OPERATOR_REPOSITORY,
    ImageProfile,
    container_command,
    repository,
)
from kubetune_dev.local_node.node import node_manifest
from kubetune_dev.local_node.pods import NodeRuntime, visible_host_paths_kept
from kubetune_dev.local_node.process import mount_order, mount_script
from kubetune_dev.local_node.volumes import Mount, materialize

pytestmark = pytest.mark.unit


def test_mount_over_a_parent_of_other_sources_goes_last() -> None:
    tmp = Mount(Path("/tmp/sandbox/volumes/tmp"), "/tmp")
    config = Mount(Path("/tmp/sandbox/volumes/config"), "/etc/kubetune")
    scratch = Mount(Path("/tmp/sandbox/volumes/scratch"), "/scratch")
    assert mount_order([tmp, config, scratch]) == [config, scratch, tmp]


def test_mounts_that_would_hide_the_virtualenv_are_dropped() -> None:
    runtime = NodeRuntime("127.0.0.1", 6443, Path("/tmp/checkout/.venv/bin"), Path("/tmp/checkout/.kubetune"))
    tmp = Mount(Path("/x/tmp"), "/tmp")
    scratch = Mount(Path("/x/scratch"), "/scratch")
    assert visible_host_paths_kept([tmp, scratch], runtime, Path("/srv/node/pods/p")) == [scratch]


def test_mounts_that_would_hide_the_sandbox_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The termination log lives in the sandbox: a pod's /tmp emptyDir must not hide a node rooted in /tmp."""
    monkeypatch.setattr(sys, "path", ["/opt/venv/lib/python3/site-packages"])  # a checkout under /tmp hides too
    runtime = NodeRuntime("127.0.0.1", 6443, Path("/opt/venv/bin"), Path("/tmp/node"))
    tmp = Mount(Path("/tmp/node/pods/p/volumes/tmp"), "/tmp")
    scratch = Mount(Path("/tmp/node/pods/p/volumes/scratch"), "/scratch")
    assert visible_host_paths_kept([tmp, scratch], runtime, Path("/tmp/node/pods/p")) == [scratch]
    assert visible_host_paths_kept([tmp, scratch], runtime, Path("/srv/node/pods/p")) == [tmp, scratch]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--node-rank=$(NODE_RANK)", "--node-rank=1"),
        ("$(MASTER_ADDR):$(NODE_RANK)", "job-0.svc:1"),
        ("$(UNDEFINED) stays", "$(UNDEFINED) stays"),
        ("$$(NODE_RANK) is escaped", "$(NODE_RANK) is escaped"),
        ("a $ b $x $(unclosed", "a $ b $x $(unclosed"),
        ("cost: $$5", "cost: $5"),
        ("trailing $", "trailing $"),
    ],
)
def test_variable_references_expand_like_the_kubelet(text: str, expected: str) -> None:
    assert expand(text, {"NODE_RANK": "1", "MASTER_ADDR": "job-0.svc"}) == expected


SERVICE_SELECTOR = {"batch.kubernetes.io/job-name": "run-train"}


def _indexed_pod(index: int, subdomain: str | None = "run-rdzv", job: str = "run-train") -> PodDns:
    return PodDns("ml", f"{job}-{index}", subdomain, {"batch.kubernetes.io/job-name": job})


def test_hosts_file_resolves_every_peer_the_headless_service_publishes_to_loopback() -> None:
    pods = [_indexed_pod(0), _indexed_pod(1)]
    text = hosts_file(pods[1], pods, {("ml", "run-rdzv"): SERVICE_SELECTOR})
    lines = [line.split("\t") for line in text.splitlines() if line.startswith("127.0.0.1")]
    names = {name: line[0] for line in lines for name in line[1:]}
    assert lines[0] == ["127.0.0.1", "localhost"]
    assert lines[1] == ["127.0.0.1", "run-train-1.run-rdzv.ml.svc.cluster.local", "run-train-1"], "the kubelet's line"
    for index in (0, 1):
        for name in dns_names(pods[index], {("ml", "run-rdzv"): SERVICE_SELECTOR}):
            assert names[name] == "127.0.0.1"
    assert "run-train-0.run-rdzv" in names, "MASTER_ADDR is rendered in this short form"
    assert len(names) == len([n for line in lines for n in line[1:]]), "each name once"


def test_pods_without_a_matching_headless_service_get_no_peer_names() -> None:
    other_job = _indexed_pod(0, job="other-train")
    no_subdomain = _indexed_pod(1, subdomain=None)
    published = {("ml", "run-rdzv"): SERVICE_SELECTOR}
    assert dns_names(other_job, published) == [], "the Service's selector does not match it"
    assert dns_names(no_subdomain, published) == []
    assert dns_names(_indexed_pod(0), {}) == [], "no headless Service of that name"
    text = hosts_file(no_subdomain, [other_job, no_subdomain], published)
    assert text.splitlines()[-1] == "127.0.0.1\trun-train-1"


def test_only_headless_services_with_a_selector_publish_pod_names() -> None:
    def service(name: str, cluster_ip: str, selector: dict[str, str] | None) -> SimpleNamespace:
        return SimpleNamespace(
            metadata=SimpleNamespace(namespace="ml", name=name),
            spec=SimpleNamespace(cluster_ip=cluster_ip, selector=selector),
        )

    services = [
        service("run-rdzv", "None", SERVICE_SELECTOR),
        service("web", "10.0.0.1", {"app": "web"}),
        service("manual", "None", None),
    ]
    assert headless_selectors(services) == {("ml", "run-rdzv"): SERVICE_SELECTOR}


def test_pod_script_sets_the_hostname_before_binding_volumes() -> None:
    script = mount_script([Mount(Path("/sandbox/etc-hosts"), "/etc/hosts")], "run-train-0")
    assert script.startswith("hostname run-train-0 && ")
    assert "mount --bind /sandbox/etc-hosts /etc/hosts" in script
    assert script.endswith('exec "$@"')


def test_mount_points_another_namespace_still_uses_are_not_removed(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    busy, idle, spaced = tmp_path / "scratch", tmp_path / "etc-kubetune", tmp_path / "with space"
    for folder in (busy, idle, spaced):
        folder.mkdir()
    (proc / "4242").mkdir(parents=True)
    escaped = str(spaced).replace(" ", "\\040")  # mountinfo escapes spaces as octal
    (proc / "4242" / "mountinfo").write_text(
        "1 0 0:1 / / rw - ext4 /dev/root rw\n"
        f"900 1 0:1 /sandbox/scratch {busy} rw - ext4 /dev/root rw\n"
        f"901 1 0:1 /sandbox/x {escaped} rw - ext4 /dev/root rw\n"
    )
    assert {str(busy), str(spaced)} <= process.mount_points_in_use(proc)
    process.remove_mount_points([busy, idle, spaced], proc)
    assert busy.is_dir(), "a pod of another session still has its volume mounted there"
    assert spaced.is_dir()
    assert not idle.exists()


def test_downward_api_volumes_carry_pod_annotations_and_names(tmp_path: Path) -> None:
    """trainer.json reaches the trainer as a downward-API file of the pod's annotation, as the kubelet writes it."""
    from kubernetes import client

    items = [
        client.V1DownwardAPIVolumeFile(
            path="trainer.json", field_ref=client.V1ObjectFieldSelector(field_path="metadata.annotations['k/c']")
        ),
        client.V1DownwardAPIVolumeFile(path="name", field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")),
    ]
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="run-train-abcde", namespace="ml", annotations={"k/c": '{"mode": "train"}'}),
        spec=client.V1PodSpec(
            containers=[],
            volumes=[client.V1Volume(name="config", downward_api=client.V1DownwardAPIVolumeSource(items=items))],
        ),
    )
    folders = materialize(None, pod, tmp_path / "sandbox", tmp_path / "claims")  # no API reads for these volumes
    assert (folders["config"] / "trainer.json").read_text() == '{"mode": "train"}'
    assert (folders["config"] / "name").read_text() == "run-train-abcde"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/kubetune/kubetune-operator:0.1.0", "ghcr.io/kubetune/kubetune-operator"),
        ("ghcr.io/kubetune/kubetune-operator@sha256:" + "a" * 64, "ghcr.io/kubetune/kubetune-operator"),
        ("registry.local:5000/team/op:1@sha256:" + "b" * 64, "registry.local:5000/team/op"),
        ("registry.local:5000/team/op", "registry.local:5000/team/op"),
        ("busybox", "busybox"),
    ],
)
def test_an_image_is_known_by_its_repository(image: str, expected: str) -> None:
    assert repository(image) == expected


def test_command_replaces_the_entrypoint_and_args_follow_whichever_runs() -> None:
    images = {"op": ImageProfile(("kubetune", "operator"))}
    assert container_command("op:1", None, ["-A"], images) == ["kubetune", "operator", "-A"]
    assert container_command("op:1", ["python", "-m", "x"], ["-v"], images) == ["python", "-m", "x", "-v"]
    assert container_command("unknown:1", ["sh"], None, images) == ["sh"]
    with pytest.raises(ValueError, match="knows no entrypoint"):
        container_command("unknown:1", None, ["-v"], images)


def test_the_operator_image_profile_matches_the_dockerfile_and_the_chart() -> None:
    repo = Path(__file__).resolve().parents[2]
    entrypoint = next(line for line in (repo / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT"))
    profile = KNOWN_IMAGES[OPERATOR_REPOSITORY]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT")) == list(profile.entrypoint)
    values = yaml.safe_load((repo / "charts" / "kubetune" / "values.yaml").read_text())
    assert values["image"]["repository"] == OPERATOR_REPOSITORY
    assert profile.own_network, "two replicas on one host would fight over the chart's fixed ports"


def test_a_tainted_local_node_keeps_other_pods_away() -> None:
    taint = {"key": "kubetune.io/local-node", "value": "true", "effect": "NoSchedule"}
    assert node_manifest("n", [taint])["spec"]["taints"] == [taint]
    assert node_manifest("n")["spec"]["taints"] == []


def test_a_sigterm_sent_to_a_frozen_pod_is_seen_pending_until_it_thaws() -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)  # its own process group, as a pod's
    try:
        frozen = FrozenPod(child.pid)
        os.killpg(child.pid, signal.SIGSTOP)
        # until the kernel has stopped it, a SIGTERM would be delivered first (lower number) and end it
        wait_until(
            "the process stopped",
            lambda: Path(f"/proc/{child.pid}/stat").read_text().split(")")[1].split()[0] == "T",
            timeout=10,
            interval=0.01,
        )
        assert not frozen.terminated()
        os.killpg(child.pid, signal.SIGTERM)  # what the node does when the pod is deleted
        assert frozen.terminated()
        assert child.poll() is None, "stopped: the SIGTERM waits"
        frozen.thaw()
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()

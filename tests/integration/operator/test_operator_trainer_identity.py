"""One trainer identity per namespace, confined by the chart's ValidatingAdmissionPolicy in the real API server.

Tokens are minted as the kubelet mints a pod's: TokenRequest bound to a pod (its name and uid become the token's
pod-name/pod-uid claims) of a Job the operator created and kwok runs. Each run's token writes its own status and is
refused on every other run's, including names built to look alike: `a` and `a-train-0` (Job `a-train-0-train`, on
two nodes: pods `a-train-0-train-<index>-<random>`),
and a hashed Job name that ends in digits only (`<43 characters>-<8 digits>`, whose pods could pass for an Indexed
pod of the other run's Job). An unbound token is refused, and so is a write of `status.jobName`, and a write before
the operator named the run's Job in its status (the trainer retries it). Without the policy
the operator keeps per-run identities and says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.api.v1alpha1.pod_contract import TRAINER_SERVICE_ACCOUNT
from kubetune.k8s.interface import KubeError
from kubetune.render.names import job_name
from kubetune_dev.controlplane.testing import wait_until
from support.operator_objects import trainer_apply

pytestmark = [pytest.mark.integration, pytest.mark.tier_b]

KEEP_RUNNING = {"kwok.kubetune.io/keep-running": "true"}
MERGE = "application/merge-patch+json"
SHORT = "a" * 37
"""Its Job, `<SHORT>-train`, is 43 characters: the head of a hashed Job name."""


def digits_only_lookalike() -> str:
    """A run name whose Job name is `<SHORT>-train-<8 digits>`: truncated, with a digest that happens to be digits."""
    for i in range(10_000):
        name = f"{SHORT}-train-{i}-{'x' * 20}"
        job = job_name(name)
        head, digest = job.rsplit("-", 1)
        if head == job_name(SHORT) and digest.isdigit():
            return name
    raise AssertionError("no lookalike name in 10000 tries")


def refused(write: Any) -> str:
    with pytest.raises(KubeError) as denied:
        write()
    assert denied.value.status == 403, denied.value
    return str(denied.value)


def test_a_pod_token_writes_its_own_run_only(operator: Any, cluster: Any, ftj_factory: Any) -> None:
    runs = ["a", "a-train-0", SHORT, digits_only_lookalike()]
    for name in runs:  # a-train-0 runs on two nodes: an Indexed Job, pods <job>-<index>-<random>
        ftj_factory(name, KEEP_RUNNING, **({"resources": {"gpus": 1, "nodes": 2}} if name == "a-train-0" else {}))
    pods: dict[str, dict[str, Any]] = {}
    for name in runs:
        cluster.wait_phase(name, "Running", timeout=90)
        job = cluster.get("Job", job_name(name))
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == TRAINER_SERVICE_ACCOUNT
        pods[name] = max(cluster.pods(job_name(name)), key=lambda pod: pod["metadata"]["name"])
    assert pods["a-train-0"]["metadata"]["name"].startswith("a-train-0-train-1-"), "index 1: not rank 0 either"
    tokens = {name: cluster.token_client(TRAINER_SERVICE_ACCOUNT, pod) for name, pod in pods.items()}
    unbound = cluster.token_client(TRAINER_SERVICE_ACCOUNT)

    def write(token: str, target: str, step: int = 1) -> None:
        trainer_apply(tokens[token], cluster, "FineTuneJob", target, {"progress": {"step": step}})

    wait_until(  # a new policy is enforced once the API server's informer has it
        "the policy refuses an unbound token",
        lambda: "bound to a pod" in refused(lambda: trainer_apply(unbound, cluster, "FineTuneJob", "a", {})),
    )
    for token in runs:
        write(token, token, step=7)
        assert cluster.status(token)["progress"]["step"] == 7
        for target in runs:
            if target != token:
                message = refused(lambda token=token, target=target: write(token, target))
                assert f"is not a pod of this object's Job (status.jobName: {job_name(target)})" in message
    jobname = {"progress": {"step": 8}, "jobName": "a-train-0-train"}
    assert "operator's to write" in refused(lambda: trainer_apply(tokens["a"], cluster, "FineTuneJob", "a", jobname))
    for forbidden in (
        lambda: tokens["a"].get(cluster.url("FineTuneJob", "a")),  # the shared identity reads nothing
        lambda: tokens["a"].list(cluster.url("Secret")),
        lambda: tokens["a"].request(
            "PATCH", cluster.url("FineTuneJob", "a"), body={"spec": {"suspend": True}}, content_type=MERGE
        ),
    ):
        refused(forbidden)
    # The race the trainer retries through: its pod runs before the operator's status names the Job.
    ftj_factory("early", baseModel={"uri": "hf://org/tiny", "credentialsSecretRef": {"name": "missing"}})
    cluster.wait_phase("early", "Pending")  # waits for its Secret: no Job, no jobName
    pod = {"metadata": {"name": "early-train-bcdfg"}, "spec": {"serviceAccountName": TRAINER_SERVICE_ACCOUNT}}
    pod["spec"]["containers"] = [{"name": "trainer", "image": "kubetune/trainer:test"}]
    early = cluster.token_client(TRAINER_SERVICE_ACCOUNT, cluster.kube.create(cluster.url("Pod"), pod))
    message = refused(lambda: trainer_apply(early, cluster, "FineTuneJob", "early", {"progress": {"step": 1}}))
    assert "status.jobName: not set yet" in message
    accounts = {s["metadata"]["name"] for s in cluster.list("ServiceAccount")} - {"default"}
    assert accounts == {TRAINER_SERVICE_ACCOUNT}, "no per-run identity"


def test_without_the_policy_each_run_keeps_its_own_identity(
    make_operator: Any, kubeconfig: Any, cluster: Any, ftj_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_TRAINER_STATUS_POLICY", "not-installed")
    operator = make_operator(cluster.namespace, kubeconfig)
    operator.start()
    runner = operator.runner
    try:
        ftj_factory("solo", KEEP_RUNNING)
        job = wait_until("the training Job", lambda: cluster.get("Job", "solo-train"), timeout=60)
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "solo-train"
        role = cluster.get("Role", "solo-train")
        assert {tuple(rule["resourceNames"]) for rule in role["rules"]} == {("solo",)}
        assert cluster.get("ServiceAccount", TRAINER_SERVICE_ACCOUNT) is None
    finally:
        operator.stop()  # the namespace goes after the test, with what the operator made
    assert "ValidatingAdmissionPolicy not-installed not found" in runner.output

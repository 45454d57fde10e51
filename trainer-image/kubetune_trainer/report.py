"""Live progress and the final result, written into the target object's status by rank 0.

The trainer owns exactly `status.progress` and `status.result` (FineTuneJob) or `status.artifact`
(Adapter, merge mode). It writes them with server-side apply on the status subresource under its own
field manager, so it never overwrites the operator's fields (phase, conditions) and needs no
read-modify-write. Every apply sends all the trainer's fields (progress with the result), because
apply removes fields a manager stops sending. Credentials are the pod's ServiceAccount token: the namespace's
`kubetune-trainer`, which the chart's ValidatingAdmissionPolicy confines to the status of this pod's own run,
or a Role of this one object's status (a per-run identity); outside a pod (tests, `kubetune run`) `KUBECONFIG`
is used.

Progress reporting is best effort: an unreachable or refusing API server is logged and training continues,
since losing a progress update is harmless and losing a training run is not. Updates are sent at most
every `runtime.progressIntervalSeconds`, plus one at the end. The result is not left to chance: it goes
into the container's termination message first (the operator recovers it from there), then its status
write is retried with backoff until it lands, SIGTERM arrives, or `RESULT_WRITE_SECONDS` pass (so is a merged
Adapter's artifact).

All Kubernetes client code of the trainer lives in this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from kubetune.api.apply_yaml import apply_body
from kubetune.api.resources import KUBETUNE_RESOURCES
from kubetune.api.v1alpha1.constraints import ConstraintProgress
from kubetune.api.v1alpha1.finetunejob import Progress
from kubetune.api.v1alpha1.pod_contract import TRAINER_FIELD_MANAGER
from kubetune.api.v1alpha1.trainer_config import StatusTarget
from kubetune_trainer.context import RunContext
from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.objectives.lagrangian import logged_constraints
from kubetune_trainer.termination import Terminated, result_message, write_termination_message

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
REQUEST_TIMEOUT_SECONDS = 5
MAX_BACKOFF_DOUBLINGS = 5
"""While the API server refuses or is unreachable, the interval doubles up to 32x, so a dead endpoint
costs a few blocked seconds per several minutes of training rather than per interval."""
RESULT_WRITE_SECONDS = 600.0
"""How long the final result write is retried; the termination message carries the result after that."""
RESULT_BACKOFF_SECONDS = (1.0, 30.0)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    """Server-side apply of the trainer's status fields on one object; failures are logged, never raised."""

    def __init__(self, target: StatusTarget, api_client: Any) -> None:

        self.target = target
        api_client.configuration.retries = 1  # the next progress update is the retry
        self._client = api_client
        self.failures = 0
        self.consecutive_failures = 0

    @classmethod
    def from_environment(cls, target: StatusTarget) -> StatusWriter | None:
        """In a pod: the mounted ServiceAccount; otherwise `KUBECONFIG`; None when neither exists."""
        from kubernetes import client, config

        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_TOKEN.is_file():
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                return cls(target, client.ApiClient(configuration))
            if os.environ.get("KUBECONFIG"):
                kubeconfig = os.environ["KUBECONFIG"]
                return cls(target, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
        except Exception as exc:  # a broken kubeconfig must not stop training
            log.warning("status reporting disabled: cannot configure the Kubernetes client: %s", exc)
            return None
        log.info("status reporting disabled: no ServiceAccount token and no KUBECONFIG")
        return None

    def apply(self, status: dict[str, Any]) -> bool:
        resource = KUBETUNE_RESOURCES[self.target.kind]
        body = {
            "apiVersion": resource.api_version,
            "kind": self.target.kind,
            "metadata": {"name": self.target.name, "namespace": self.target.namespace},
            "status": status,
        }
        try:
            self._send(resource.group, resource.version, resource.plural, apply_body(body))
        except Exception as exc:
            self.failures += 1
            self.consecutive_failures += 1
            log.warning(
                "could not update %s %s/%s status: %s",
                self.target.kind,
                self.target.namespace,
                self.target.name,
                _short(exc),
            )
            return False
        self.consecutive_failures = 0
        return True

    def _send(self, group: str, version: str, plural: str, document: str) -> None:
        """PATCH .../status with a YAML body. The generated `patch_namespaced_custom_object_status` only takes
        objects, which it sends as JSON: an emoji becomes a surrogate-pair escape the API server refuses."""
        from kubernetes.client.exceptions import ApiException

        target = self.target
        request = self._client.param_serialize(
            "PATCH",
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
            path_params={
                "group": group,
                "version": version,
                "namespace": target.namespace,
                "plural": plural,
                "name": target.name,
            },
            query_params=[("fieldManager", TRAINER_FIELD_MANAGER), ("force", "true")],  # the only writer of these
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=document,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(*request, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)


def _short(exc: BaseException) -> str:
    """The status line, and for a refusal the API server's reason (a policy says which pod and Job it saw)."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if not status:
        return f"{type(exc).__name__}: {exc}"
    try:
        message = json.loads(getattr(exc, "body", None) or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {status} {reason}: {message}" if message else f"HTTP {status} {reason}"


class ProgressReporter(TrainerCallback):
    """Turns trainer events into `status.progress` (rate-limited) and Prometheus samples, on rank 0."""

    def __init__(
        self,
        writer: StatusWriter | None,
        metrics: TrainerMetrics | None,
        *,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer, self.metrics = writer, metrics
        self.interval = interval_seconds
        self.clock = clock
        self.progress: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self._values: dict[str, float] = {}
        self._constraints: dict[str, ConstraintProgress] = {}
        self._started: float | None = None
        self._start_step = 0
        self._start_tokens = 0
        self._last_sent: float | None = None
        self.resumed_from_step: int | None = None
        self.checkpoint_step: int | None = None

    # --- trainer events ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        # tokens/s needs `include_num_input_tokens_seen`, which RunContext sets for every rank: token
        # counting is a collective, so turning it on here (rank 0 only) would deadlock multi-process runs
        self._started = self.clock()
        self._start_step = state.global_step  # a resumed run's rate counts from where it resumed
        self._start_tokens = int(state.num_input_tokens_seen or 0)
        self.resumed_from_step = int(state.global_step) or None
        if self.resumed_from_step:  # say at once where this pod resumed (a durable checkpoint)
            self.checkpoint_step = self.checkpoint_step or self.resumed_from_step
            self.update(state, force=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        for key, name in (("loss", "loss"), ("eval_loss", "evalLoss"), ("learning_rate", "learningRate")):
            if logs and isinstance(logs.get(key), int | float):
                self._values[name] = float(logs[key])
        self._constraints.update({c.name: c for c in logged_constraints(logs or {})})
        self.update(state)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.update(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.update(state, force=True)

    # --- reporting -----------------------------------------------------------------------------------
    def update(self, state: Any, *, force: bool = False) -> None:
        if not state.is_world_process_zero:
            return
        self.progress = self.build_progress(state)
        tokens = int(state.num_input_tokens_seen or 0)
        if self.metrics is not None:
            self.metrics.observe(self.progress, tokens or None)
        if self.writer is None:
            return
        now = self.clock()
        interval = self.interval * 2 ** min(self.writer.consecutive_failures, MAX_BACKOFF_DOUBLINGS)
        if force or self._last_sent is None or now - self._last_sent >= interval:
            self._last_sent = now
            self.writer.apply(self._status())

    def build_progress(self, state: Any) -> dict[str, Any]:
        step, total = int(state.global_step), int(state.max_steps or 0)
        elapsed = self.clock() - self._started if self._started is not None else 0.0
        done = step - self._start_step
        tokens = int(state.num_input_tokens_seen or 0) - self._start_tokens
        progress = Progress(
            step=step,
            total_steps=max(total, step),
            percent=min(100, int(100 * step / total)) if total else 0,
            epoch=round(float(state.epoch or 0.0), 4),
            loss=self._values.get("loss"),
            eval_loss=self._values.get("evalLoss"),
            learning_rate=self._values.get("learningRate"),
            tokens_per_second=round(tokens / elapsed, 2) if tokens > 0 and elapsed > 0 else None,
            eta_seconds=int(elapsed / done * (total - step)) if done > 0 and total >= step else None,
            updated_at=_now(),
            resumed_from_step=self.resumed_from_step,
            checkpoint_step=self.checkpoint_step,
            constraints=list(self._constraints.values()) or None,
        )
        return progress.to_wire()

    def note_checkpoint(self, step: int) -> None:
        """Called (from the upload thread) when checkpoint `step` is complete on durable storage."""
        self.checkpoint_step = step

    def report_result(self, result: dict[str, Any]) -> bool:
        """Apply `status.result` (with the last progress, so apply keeps it)."""
        self.result = result
        return self.writer.apply(self._status()) if self.writer is not None else False

    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"progress": self.progress} if self.progress else {}
        if self.result is not None:
            status["result"] = self.result
        return status


def make_reporter(target: StatusTarget, runtime: Any) -> ProgressReporter:
    """A reporter for this process from `runtime` (reportStatus, metricsPort, progressIntervalSeconds)."""
    writer = StatusWriter.from_environment(target) if runtime.report_status else None
    metrics = None
    if runtime.metrics_port:
        metrics = TrainerMetrics()
        try:
            metrics.serve(runtime.metrics_port)
        except OSError as exc:  # port taken: keep training, keep status reporting
            log.warning("metrics endpoint disabled: cannot listen on %d: %s", runtime.metrics_port, exc)
    return ProgressReporter(writer, metrics, interval_seconds=runtime.progress_interval_seconds)


def attach_reporter(ctx: RunContext) -> None:
    """`Hooks.before_train`: register the reporter as a trainer callback (rank 0 reports, others no-op)."""
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        return
    reporter = make_reporter(ctx.config.target, ctx.config.runtime)
    ctx.extras["reporter"] = reporter
    ctx.extras["on_checkpoint"] = reporter.note_checkpoint
    ctx.callbacks.append(reporter)


def publish_result(ctx: RunContext, result: Any, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """`Hooks.after_result`: the termination message, then `status.result` until the write lands."""
    reporter: ProgressReporter | None = ctx.extras.get("reporter")
    if reporter is None:
        return
    wire = result.to_train_result().to_wire()
    write_termination_message(result_message(wire))
    try:
        deliver_result(reporter, wire, sleep=sleep)
    finally:
        if reporter.metrics is not None:
            reporter.metrics.close()


def deliver_result(reporter: ProgressReporter, result: dict[str, Any], *, sleep: Callable[[float], None]) -> bool:
    """Retries the result write until it lands (`retry_write`); either way the termination message has the result,
    so the run is not lost."""
    if reporter.writer is None:
        return False
    return retry_write(
        lambda: reporter.report_result(result),
        "result",
        "the termination message has it",
        clock=reporter.clock,
        sleep=sleep,
    )


def retry_write(
    write: Callable[[], bool],
    what: str,
    fallback: str,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    seconds: float = RESULT_WRITE_SECONDS,
) -> bool:
    """Retries `write` with backoff (1 s doubling to 30 s) for up to `seconds`; SIGTERM ends the retries too.

    Besides an unreachable API server this covers a refusal that passes: a pod of the namespace's shared identity
    may write only once the operator has put its Job's name in the object's status (the chart's policy), which
    can land a moment after the pod starts."""
    deadline = clock() + seconds
    delay = RESULT_BACKOFF_SECONDS[0]
    try:
        while not write():
            if clock() + delay > deadline:
                log.error("the %s write did not land in %.0f s; %s", what, seconds, fallback)
                return False
            log.warning("retrying the %s write in %.0f s", what, delay)
            sleep(delay)
            delay = min(delay * 2, RESULT_BACKOFF_SECONDS[1])
    except Terminated:
        log.warning("SIGTERM while writing the %s; %s", what, fallback)
        return False
    return True


def publish_adapter_artifact(
    target: StatusTarget,
    artifact: dict[str, Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
    seconds: float = RESULT_WRITE_SECONDS,
) -> bool:
    """Merge mode: write `status.artifact` of the Adapter being composed, retried like the result (`retry_write`)."""
    writer = StatusWriter.from_environment(target)
    if writer is None:
        return False
    fallback = "the Adapter will fail with NoArtifact"
    return retry_write(
        lambda: writer.apply({"artifact": artifact}),
        "artifact",
        fallback,
        clock=time.monotonic,
        sleep=sleep,
        seconds=seconds,
    )

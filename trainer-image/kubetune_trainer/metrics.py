"""Prometheus metrics of the training process, served on `runtime.metricsPort` (0 disables them).

Exposed on rank 0 at `http://POD:PORT/metrics` (default port 9400, the `metrics` container port):

| metric                                  | type    | meaning                                            |
|-----------------------------------------|---------|----------------------------------------------------|
| kubetune_trainer_step                   | gauge   | optimizer steps done                               |
| kubetune_trainer_total_steps            | gauge   | optimizer steps planned                            |
| kubetune_trainer_epoch                  | gauge   | fractional epoch                                   |
| kubetune_trainer_loss                   | gauge   | last logged training loss                          |
| kubetune_trainer_eval_loss              | gauge   | last evaluation loss                               |
| kubetune_trainer_learning_rate          | gauge   | current learning rate                              |
| kubetune_trainer_tokens_total           | counter | input tokens (non-padding) seen                    |
| kubetune_trainer_tokens_per_second      | gauge   | token throughput since training started            |
| kubetune_trainer_gpu_memory_bytes{gpu}  | gauge   | CUDA memory allocated per local GPU (absent on CPU)|
| kubetune_trainer_constraint{constraint,signal} | gauge | rlhf constraints: cost, multiplier, violation-rate |

A dedicated `CollectorRegistry` keeps these apart from anything a library registers globally, so a
scrape shows exactly the training series and tests can read them without a server.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

NAMESPACE = "kubetune_trainer"


class TrainerMetrics:
    """The training series in their own registry; `serve` starts the scrape endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.step = Gauge(f"{NAMESPACE}_step", "Optimizer steps done.", registry=r)
        self.total_steps = Gauge(f"{NAMESPACE}_total_steps", "Optimizer steps planned.", registry=r)
        self.epoch = Gauge(f"{NAMESPACE}_epoch", "Fractional epoch.", registry=r)
        self.loss = Gauge(f"{NAMESPACE}_loss", "Last logged training loss.", registry=r)
        self.eval_loss = Gauge(f"{NAMESPACE}_eval_loss", "Last evaluation loss.", registry=r)
        self.learning_rate = Gauge(f"{NAMESPACE}_learning_rate", "Current learning rate.", registry=r)
        self.tokens = Counter(f"{NAMESPACE}_tokens", "Input tokens (non-padding) seen.", registry=r)
        self.tokens_per_second = Gauge(f"{NAMESPACE}_tokens_per_second", "Tokens per second.", registry=r)
        self.gpu_memory = Gauge(f"{NAMESPACE}_gpu_memory_bytes", "CUDA memory allocated.", ["gpu"], registry=r)
        self.constraint = Gauge(
            f"{NAMESPACE}_constraint",
            "Safe-RLHF constraint signals of the last logged step.",
            ["constraint", "signal"],
            registry=r,
        )
        self._tokens_seen = 0
        self._server: Any = None

    def serve(self, port: int) -> None:
        """Start the scrape endpoint in a daemon thread (it dies with the process)."""
        self._server, _ = start_http_server(port, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe(self, progress: dict[str, Any], tokens_seen: int | None) -> None:
        """Update from the camelCase progress map the status reporter builds."""
        self.step.set(progress.get("step", 0))
        self.total_steps.set(progress.get("totalSteps", 0))
        self.epoch.set(progress.get("epoch", 0.0))
        for gauge, key in (
            (self.loss, "loss"),
            (self.eval_loss, "evalLoss"),
            (self.learning_rate, "learningRate"),
            (self.tokens_per_second, "tokensPerSecond"),
        ):
            if progress.get(key) is not None:
                gauge.set(progress[key])
        for constraint in progress.get("constraints", []):
            for signal, key in (("cost", "cost"), ("multiplier", "multiplier"), ("violation-rate", "violationRate")):
                self.constraint.labels(constraint=constraint["name"], signal=signal).set(constraint[key])
        if tokens_seen is not None and tokens_seen > self._tokens_seen:
            self.tokens.inc(tokens_seen - self._tokens_seen)
            self._tokens_seen = tokens_seen
        self._observe_gpu_memory()

    def _observe_gpu_memory(self) -> None:
        import torch

        if not torch.cuda.is_available():
            return
        for index in range(torch.cuda.device_count()):
            self.gpu_memory.labels(gpu=str(index)).set(torch.cuda.memory_allocated(index))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Current sample value (for logs and tests), e.g. `value("kubetune_trainer_step")`."""
        return self.registry.get_sample_value(name, labels or {})

"""`kubetune operator` as a real process, as a Deployment runs it: for tests that kill it, or run several replicas.

The in-process KopfRunner (tests/integration/operator/conftest.py) cannot be SIGKILLed or run twice; this can.
Its output goes to a log file the test reads while it runs; metrics are scraped from its own port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kubetune_dev.controlplane.ports import free_ports

OPERATOR = "import sys; from kubetune.cli import main; sys.exit(main())"


class OperatorProcess:
    """One `kubetune operator ARGS` process with its own log file and /metrics port."""

    def __init__(self, kubeconfig: Path, log: Path, args: list[str], env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.metrics_port = free_ports(1)[0]
        environ = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBETUNE_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", OPERATOR, "operator", *args, "-v"],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def active(self) -> bool:
        """kopf starts paused under peering; the last of its resume/pause messages tells the current state."""
        text = self.text()
        return text.rfind("Resuming operations") > text.rfind("Pausing operations")

    def handled(self, namespace: str, name: str) -> bool:
        """kopf prefixes every line about an object with [namespace/name] (log_prefix=True)."""
        return f"[{namespace}/{name}]" in self.text()

    def reconciles(self, kind: str = "FineTuneJob") -> float:
        """kubetune_reconciles_total{kind} from this process's /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "kubetune_reconciles_total" and sample.labels.get("kind") == kind:
                    return float(sample.value)
        return 0.0

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        """SIGTERM (kopf leaves the peering and exits), SIGKILL if it does not within 30 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

"""`kubetune operator` as a real process, as a Deployment runs it: for tests that kill it, run several replicas,
or measure it (the scale benchmark: its RSS, another version of the code beside it).

The in-process KopfRunner (tests/integration/operator/conftest.py) cannot be SIGKILLed or run twice; this can.
Its output goes to a log file the test reads while it runs; metrics are scraped from its own port, liveness from
its own probe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kubetune_dev.controlplane.ports import free_ports
from kubetune_dev.controlplane.processes import rss_mib
from kubetune_dev.controlplane.testing import wait_until

OPERATOR = "import sys; from kubetune.cli import main; sys.exit(main())"


class OperatorProcess:
    """One `kubetune operator ARGS` process with its own log file, /metrics port and liveness probe.

    `inherit_settings=False` passes none of this test process's KUBETUNE_* variables (only `env`): the operator
    as a user configures it. `source` (a checkout's `operator` folder) runs another version of the code, e.g. the
    one before a change, for a before/after comparison in the same run."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        args: list[str],
        env: Mapping[str, str] | None = None,
        *,
        inherit_settings: bool = True,
        source: Path | None = None,
    ) -> None:
        self.log = log
        self.metrics_port, probe_port = free_ports(2)
        self.probe = f"http://127.0.0.1:{probe_port}/healthz"
        inherited = {k: v for k, v in os.environ.items() if inherit_settings or not k.startswith("KUBETUNE_")}
        environ = {
            **inherited,
            "KUBECONFIG": str(kubeconfig),
            "KUBETUNE_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        if source is not None:
            environ["PYTHONPATH"] = os.pathsep.join([str(source), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", OPERATOR, "operator", *args, "--liveness", self.probe],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until its liveness probe answers (it logged in and its startup handler ran)."""
        wait_until("the operator's liveness probe", self._answers, timeout=timeout, interval=0.5)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited; see {self.log}")
        try:
            with urllib.request.urlopen(self.probe, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

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

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid) or 0.0

    def settled_rss_mib(self, seconds: float) -> float:
        """RSS after `seconds` without work for it (idle workers wait, the garbage collector runs)."""
        time.sleep(seconds)
        return self.rss_mib()

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

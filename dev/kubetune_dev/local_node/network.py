"""A network namespace of a pod's own, in which only the API server is reachable.

Pods of this node share the host's network by default (multi-node training connects its pods through
loopback). Some images listen on fixed ports on every address, as a pod may: the operator's /metrics and
liveness endpoints. Two replicas on one host would collide, and would listen on the host; such pods get
their own namespace, with loopback up and a forwarder on its 127.0.0.1:<API port> to the API server, so the
in-cluster address the node gives every pod (KUBERNETES_SERVICE_HOST/PORT) keeps working.

The namespace is made by a short-lived thread of this process (network namespaces belong to threads), which
leaves behind a listening socket inside it and a file descriptor of it; the pod joins it with
`nsenter --net=/proc/self/fd/N`. Connections accepted inside are forwarded from the host's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sh22x"
"""struct ifreq on Linux (40 bytes): the interface name and, for the flag ioctls, a short."""


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
        flags = struct.unpack(IFREQ, current)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def _in_new_namespace(work: Callable[[], None]) -> None:
    """Runs `work` in a thread moved into a new network namespace; the thread ends there, the namespace
    lives on through whatever `work` kept open."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            _loopback_up()
            work()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name="pod-network-setup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class PodNetwork:
    """The namespace, its API forwarder and the file descriptor a pod joins it through; `close()` when the pod ends."""

    def __init__(self, api_host: str, api_port: int) -> None:
        self.api = (api_host, api_port)
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()
        made: list[tuple[socket.socket, int]] = []

        def listen_inside() -> None:
            listener = socket.create_server(("127.0.0.1", api_port))
            made.append((listener, os.open("/proc/thread-self/ns/net", os.O_RDONLY)))

        _in_new_namespace(listen_inside)
        ((self.listener, self.namespace_fd),) = made
        self._accepting = threading.Thread(target=self._accept, name=f"pod-network-api-{api_port}", daemon=True)
        self._accepting.start()

    def enter(self) -> list[str]:
        """The argv prefix that runs a command in this namespace (pass `namespace_fd` to the child)."""
        return ["nsenter", f"--net=/proc/self/fd/{self.namespace_fd}"]

    def _accept(self) -> None:
        while True:
            try:
                inside, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                outside = socket.create_connection(self.api, timeout=10)
            except OSError as error:
                log.warning("pod network: API server unreachable: %s", error)
                inside.close()
                continue
            outside.settimeout(None)
            threading.Thread(target=self._connection, args=(inside, outside), daemon=True).start()

    def _connection(self, inside: socket.socket, outside: socket.socket) -> None:
        """Both directions until each side has finished sending; then both sockets close."""
        with self._guard:
            self._open |= {inside, outside}
        upstream = threading.Thread(target=_pump, args=(inside, outside), daemon=True)
        upstream.start()
        _pump(outside, inside)
        upstream.join()
        with self._guard:
            self._open -= {inside, outside}
        inside.close()
        outside.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.namespace_fd)
        with self._guard:
            remaining, self._open = self._open, set()
        for sock in remaining:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

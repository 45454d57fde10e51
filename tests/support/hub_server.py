"""A local HTTP server that speaks the part of the Hugging Face Hub API `snapshot_download` uses.

huggingface_hub offers no offline test server (its own tests use a staging Hub); it does let every call
point at another endpoint (`HF_ENDPOINT`, or `endpoint=`), which is how mirrors work. This server
answers the calls the library makes, as the Hub does: the repository info (`/api/models/REPO/revision/REV`,
which resolves a branch to its commit), the recursive file listing (`/api/models/REPO/tree/COMMIT`) and
`HEAD`/`GET` of `/REPO/resolve/COMMIT/FILE` with the `X-Repo-Commit` and `ETag` headers. Every file
request is recorded, so a test sees exactly which files a download fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Hub:
    """Repositories (repo id -> relative path -> bytes) at one commit, and what was downloaded from them."""

    repos: dict[str, dict[str, bytes]]
    url: str = ""
    downloads: list[str] = field(default_factory=list)
    """`REPO/FILE` per GET of a file, in order."""

    def fetched(self, repo: str) -> set[str]:
        return {d.removeprefix(repo + "/") for d in self.downloads if d.startswith(repo + "/")}


def repo_files(folder: Path, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A model directory as a repository's files, plus `extra` ones (other formats, subfolders)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return files | (extra or {})


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _not_found(self, what: str, head: bool = False) -> None:
            self._send(404, what.encode(), {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head=head)

        def _route(self, head: bool) -> None:
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                repo, verb = "/".join(parts[2:4]), parts[4]
                if repo not in hub.repos:
                    self._send(404, b"no repo", {"X-Error-Code": "RepoNotFound"})
                elif verb == "revision":
                    siblings = [{"rfilename": name} for name in sorted(hub.repos[repo])]
                    self._json({"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "siblings": siblings})
                elif verb == "tree":
                    self._json(
                        [
                            {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                            for name, data in sorted(hub.repos[repo].items())
                        ]
                    )
                else:
                    self._not_found(self.path)
                return
            if len(parts) >= 5 and parts[2] == "resolve":
                repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                data = hub.repos.get(repo, {}).get(name)
                if data is None:
                    self._not_found(name, head)
                    return
                if not head:
                    hub.downloads.append(f"{repo}/{name}")
                etag = f'"{hashlib.sha1(data).hexdigest()}"'
                self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": etag}, head=head)
                return
            self._not_found(self.path, head)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler


@contextmanager
def in_thread(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve `server` (bound to a loopback port) in a thread for the duration of the block; yields its URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serving(repos: dict[str, dict[str, bytes]]) -> Iterator[Hub]:
    """Serve `repos` on a free loopback port for the duration of the block."""
    hub = Hub(repos)
    with in_thread(ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))) as hub.url:
        yield hub

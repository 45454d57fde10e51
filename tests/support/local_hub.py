"""A local stand-in for the Hugging Face Hub that takes writes too: enough of its HTTP API to push and pull.

There is no Hub to reach from CI, and pushing to the real one from tests is not acceptable, so this
server speaks the endpoints huggingface_hub (>= 1.0) calls when the trainer publishes an adapter
(`create_repo`, `create_commit`: `/api/repos/create`, `/api/validate-yaml` for the model card's
header, `.../preupload/REV`, `.../commit/REV`) and when
it downloads a snapshot (`repo_info`, `list_repo_tree`, `hf_hub_download`: `.../revision/REV`,
`.../tree/REV`, `HEAD`/`GET .../resolve/REV/PATH`), for models and datasets. Every file is declared
a regular (non-LFS) upload in preupload, so content travels base64-encoded inside the commit; the
LFS/Xet transfer the real Hub uses for large files is the part this does NOT exercise. Writes need
the configured bearer token (a wrong one gets 401), and so do reads of private repositories (public ones
need none). Commits are real: each one
gets a new sha, and a repository's history keeps every commit, so `@SHA` pins a snapshot.

Use `running_hub(token)` as a context manager; it yields a `LocalHub` with the endpoint and the
stored repositories.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

from support.hub_server import in_thread

__all__ = ["LocalHub", "Repo", "running_hub"]


@dataclass
class Repo:
    """A repository: commits in order, each a full snapshot {path: bytes}, and the request log of writes."""

    repo_type: str
    private: bool = False
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if not self.commits:
            return None
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c[0] == revision), None)


@dataclass
class LocalHub:
    endpoint: str
    token: str
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    """(repo type, repo id) -> repository."""

    def put(
        self, repo_type: str, repo_id: str, files: dict[str, bytes], message: str = "seed", *, private: bool = False
    ) -> str:
        """Store a commit directly (seeding a base model or a dataset the trainer will download)."""
        repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_type, private=private))
        return _commit(repo, files, message)


def _commit(repo: Repo, files: dict[str, bytes], message: str, deleted: tuple[str, ...] = ()) -> str:
    previous = dict(repo.commits[-1][1]) if repo.commits else {}
    previous.update(files)
    for path in deleted:
        previous.pop(path, None)
    digest = hashlib.sha1(f"{len(repo.commits)}\0{message}".encode())
    for path in sorted(previous):
        digest.update(path.encode() + b"\0" + previous[path])
    sha = digest.hexdigest()
    repo.commits.append((sha, previous))
    repo.messages.append(message)
    return sha


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code} if code else None)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _api_target(self, parts: list[str]) -> tuple[Repo | None, str, str, str, str]:
        """/api/{models|datasets}/ORG/NAME/{verb}/REV[/...] -> (repo, type, id, verb, rest)."""
        repo_type = parts[1].removesuffix("s")
        repo_id = "/".join(parts[2:4])
        verb = parts[4] if len(parts) > 4 else ""
        rest = unquote("/".join(parts[5:]))
        return self.hub.repos.get((repo_type, repo_id)), repo_type, repo_id, verb, rest

    def do_POST(self) -> None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[:3] == ["api", "repos", "create"]:
            if not self._authorized():
                return
            payload = json.loads(self._body())
            repo_id = f"{payload.get('organization')}/{payload['name']}"
            key = (payload.get("type") or "model", repo_id)
            if key in self.hub.repos:
                body = {"error": "You already created this model repo", "url": f"{self.hub.endpoint}/{repo_id}"}
                self._json(409, body)
                return
            self.hub.repos[key] = Repo(key[0], private=payload.get("visibility") == "private")
            self._json(200, {"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id})
            return
        if parts[:2] == ["api", "validate-yaml"]:
            self._validate_yaml(json.loads(self._body())["content"])
            return
        repo, _, repo_id, verb, _ = self._api_target(parts)
        if not self._authorized():
            return
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return
        body = self._body()
        if verb == "preupload":
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            self._json(200, {"files": modes, "commitOid": repo.commits[-1][0] if repo.commits else None})
        elif verb == "commit":
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = {
                line["value"]["path"]: base64.b64decode(line["value"]["content"])
                for line in lines
                if line["key"] == "file"
            }
            deleted = tuple(line["value"]["path"] for line in lines if line["key"] == "deletedFile")
            sha = _commit(repo, files, header["summary"], deleted)
            self._json(200, {"commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha})
        else:
            self._error(404, f"no such endpoint {self.path}")

    def _validate_yaml(self, content: str) -> None:
        """A README's metadata header must be a YAML mapping with list-valued tags and datasets, as on the Hub."""
        import yaml

        errors = []
        if content.startswith("---\n"):
            try:
                header = yaml.safe_load(content.split("---\n")[1])
            except yaml.YAMLError as exc:
                header, errors = None, [{"message": f"invalid YAML: {exc}"}]
            if not errors and not isinstance(header, dict):
                errors.append({"message": "the metadata header is not a mapping"})
            for key in ("tags", "datasets"):
                if isinstance(header, dict) and key in header and not isinstance(header[key], list):
                    errors.append({"message": f"{key} must be a list"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _resolve(self, parts: list[str], head: bool) -> None:
        repo_type = "dataset" if parts[0] == "datasets" else "model"
        parts = parts[1:] if repo_type == "dataset" else parts
        repo = self.hub.repos.get((repo_type, "/".join(parts[:2])))
        if repo is not None and repo.private and not self._authorized():
            return
        snapshot = repo.snapshot(unquote(parts[3])) if repo and len(parts) > 4 and parts[2] == "resolve" else None
        path = unquote("/".join(parts[4:]))
        if snapshot is None or path not in snapshot[1]:
            self._error(404, "Entry not found", "EntryNotFound" if snapshot else "RepoNotFound")
            return
        data = snapshot[1][path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", snapshot[0])
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _get(self, head: bool) -> None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[0] != "api":
            self._resolve(parts, head)
            return
        repo, _, repo_id, verb, rest = self._api_target(parts)
        if repo is not None and repo.private and not self._authorized():
            return
        snapshot = repo.snapshot(rest.split("/", 1)[0] or "main") if repo else None
        if snapshot is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return
        sha, files = snapshot
        if verb == "revision":
            siblings = [{"rfilename": path} for path in sorted(files)]
            self._json(
                200, {"id": repo_id, "sha": sha, "siblings": siblings, "private": repo.private if repo else False}
            )
        elif verb == "tree":
            entries = [
                {"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                for p, d in sorted(files.items())
            ]
            self._json(200, entries)
        else:
            self._error(404, f"no such endpoint {self.path}")

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)


@contextlib.contextmanager
def running_hub(token: str = "hf_kubetune_test_write") -> Iterator[LocalHub]:
    """Serve on a free 127.0.0.1 port in a thread; stopped (and the port closed) on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    hub = LocalHub(endpoint=f"http://127.0.0.1:{server.server_address[1]}", token=token)
    server.RequestHandlerClass = type("Handler", (_Handler,), {"hub": hub})
    with in_thread(server):
        yield hub

"""Dataset and model locations: parse `hf://`, `s3://`, `pvc://` and `file://` URIs, and fetch them.

Parsing is pure (`parse_uri`) so the spec's URIs can be checked before anything is downloaded; the
I/O functions are thin wrappers over maintained libraries (huggingface_hub, s3fs/fsspec) that turn
"not there" into a `UriError` (a config error) while letting transient failures propagate (retryable).
Everything is materialised as a local path under a cache directory (the model-cache volume), so a
second job with the same inputs does not download again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from kubetune.api.v1alpha1.pod_contract import PVC_ROOT
from kubetune_trainer.data.model_files import FileSelection
from kubetune_trainer.errors import UriError

if TYPE_CHECKING:
    import s3fs

__all__ = [
    "DEFAULT_PVC_ROOT",
    "FileUri",
    "HfUri",
    "PvcUri",
    "ResolvedSource",
    "S3Uri",
    "Uri",
    "fetch_hf",
    "fetch_s3",
    "local_path",
    "parse_uri",
    "resolve",
    "s3_filesystem",
]

log = logging.getLogger(__name__)

DEFAULT_PVC_ROOT = Path(PVC_ROOT)
"""Where the operator mounts each claim named in a `pvc://CLAIM/...` URI (as `/mnt/pvc/CLAIM`)."""

_HF_PART = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
_HF_REVISION = re.compile(r"^[\w.\-/]{1,128}$")
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63 chars) - same as the CRD's pattern.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# A claim name is a DNS-1123 subdomain.
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SCHEMES = ("hf", "s3", "pvc", "file")
_TRUTHY = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class HfUri:
    """`hf://ORG/NAME[@REVISION]` or `hf://datasets/ORG/NAME[@REVISION]` (huggingface_hub's convention).

    `repo_type` is "dataset" for the `datasets/` prefix and None for the short form, whose type is the
    one of the field it appears in (a model for baseModel, a dataset for dataset URIs).
    """

    repo_id: str
    revision: str | None = None
    repo_type: Literal["dataset"] | None = None

    def __str__(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"hf://{prefix}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class S3Uri:
    """`s3://BUCKET/KEY`: one object, or every object under a prefix when the key ends in `/` or is empty."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class PvcUri:
    """`pvc://CLAIM/PATH`: a path inside a PersistentVolumeClaim that the operator mounts for the pod."""

    claim: str
    path: str

    def __str__(self) -> str:
        return f"pvc://{self.claim}/{self.path}"


@dataclass(frozen=True)
class FileUri:
    """`file:///PATH`: an absolute path on the pod's (or the developer's) filesystem."""

    path: str

    def __str__(self) -> str:
        return f"file://{self.path}"


Uri = HfUri | S3Uri | PvcUri | FileUri


@dataclass(frozen=True)
class ResolvedSource:
    """A URI materialised on local disk; `revision` is the pinned hub commit (hf:// only)."""

    uri: str
    path: Path
    revision: str | None = None


def parse_uri(uri: str) -> Uri:
    """Parse a URI into one of the four typed locations, or raise `UriError` saying what is wrong."""
    text = uri.strip()
    if not text:
        raise UriError(
            "dataset/model URI is empty; use hf://ORG/NAME, s3://BUCKET/KEY, pvc://CLAIM/PATH or file:///PATH"
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise UriError(
            f"URI {uri!r} has no scheme; use hf://ORG/NAME, s3://BUCKET/KEY, pvc://CLAIM/PATH or file:///PATH"
        )
    scheme = scheme.lower()
    if scheme == "hf":
        return _parse_hf(uri, rest)
    if scheme == "s3":
        return _parse_s3(uri, rest)
    if scheme == "pvc":
        return _parse_pvc(uri, rest)
    if scheme == "file":
        return _parse_file(uri, rest)
    raise UriError(f"URI {uri!r} has unsupported scheme {scheme!r}; supported: {', '.join(_SCHEMES)}")


def _parse_hf(uri: str, rest: str) -> HfUri:
    repo, _, revision = rest.partition("@")
    parts = repo.split("/")
    repo_type: Literal["dataset"] | None = None
    if len(parts) == 3 and parts[0] == "datasets":
        repo_type, parts = "dataset", parts[1:]
        repo = "/".join(parts)
    if len(parts) != 2 or not all(_HF_PART.match(p) for p in parts):
        raise UriError(
            f"hf URI {uri!r} must be hf://ORG/NAME[@REVISION] or hf://datasets/ORG/NAME[@REVISION] "
            "(letters, digits, '.', '-', '_')"
        )
    if "@" in rest and not _HF_REVISION.match(revision):
        raise UriError(f"hf URI {uri!r} has an invalid revision {revision!r} (a branch, tag or commit)")
    return HfUri(repo_id=repo, revision=revision or None, repo_type=repo_type)


def _parse_s3(uri: str, rest: str) -> S3Uri:
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UriError(f"s3 URI {uri!r} has no bucket; use s3://BUCKET/KEY")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UriError(f"s3 URI {uri!r}: {bucket!r} is not a valid bucket name (3-63 chars: a-z, 0-9, '.', '-')")
    return S3Uri(bucket=bucket, key=key)


def _parse_pvc(uri: str, rest: str) -> PvcUri:
    claim, _, path = rest.partition("/")
    if not claim:
        raise UriError(f"pvc URI {uri!r} has no claim; use pvc://CLAIM/PATH")
    if len(claim) > 253 or not _CLAIM.match(claim):
        raise UriError(f"pvc URI {uri!r}: {claim!r} is not a valid PersistentVolumeClaim name (DNS-1123)")
    clean = _relative_path(uri, path)
    return PvcUri(claim=claim, path=clean)


def _parse_file(uri: str, rest: str) -> FileUri:
    if not rest.startswith("/"):
        raise UriError(f"file URI {uri!r} must be absolute: file:///PATH (three slashes)")
    parts = PurePosixPath(rest).parts
    if ".." in parts:
        raise UriError(f"file URI {uri!r} must not contain '..'")
    return FileUri(path=str(PurePosixPath(rest)))


def _relative_path(uri: str, path: str) -> str:
    """Normalise a path inside a volume and refuse one that would climb out of it."""
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        raise UriError(f"URI {uri!r} must not contain '..' (paths stay inside the claim)")
    return "/".join(p for p in pure.parts if p != "/")


def local_path(uri: PvcUri | FileUri, pvc_root: Path = DEFAULT_PVC_ROOT) -> Path:
    """The local path for a volume or file URI: `pvc://CLAIM/P` is `<pvc_root>/CLAIM/P` (the pod's mount)."""
    if isinstance(uri, FileUri):
        return Path(uri.path)
    return Path(pvc_root) / uri.claim / uri.path


def s3_filesystem(env: Mapping[str, str] | None = None) -> s3fs.S3FileSystem:
    """An s3fs filesystem configured from the environment (the pod gets these from a Secret).

    The endpoint comes from `AWS_ENDPOINT_URL` or `S3_ENDPOINT_URL` (MinIO, SeaweedFS, Ceph...), the
    credentials from the standard `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
    (botocore's other sources - profiles, IRSA - still apply when they are unset). The instance cache
    is skipped so a changed environment is honoured.
    """
    import s3fs

    environ = os.environ if env is None else env
    client_kwargs: dict[str, Any] = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or environ.get("S3_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region or endpoint:
        client_kwargs["region_name"] = region or "us-east-1"
    kwargs: dict[str, Any] = {"client_kwargs": client_kwargs, "skip_instance_cache": True}
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["key"] = environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret"] = environ["AWS_SECRET_ACCESS_KEY"]
        if environ.get("AWS_SESSION_TOKEN"):
            kwargs["token"] = environ["AWS_SESSION_TOKEN"]
    return s3fs.S3FileSystem(**kwargs)


def fetch_s3(
    uri: S3Uri, cache_dir: Path, fs: s3fs.S3FileSystem | None = None, files: FileSelection | None = None
) -> Path:
    """Download an object (or the objects under a prefix, those `files` selects by relative name when
    given) into `cache_dir/s3/BUCKET/KEY`.

    Each downloaded file's ETag and size are recorded; a file whose remote ETag and size still match is
    not downloaded again, which is what lets a second job reuse the model-cache volume.
    """
    filesystem = fs if fs is not None else s3_filesystem()
    remote = f"{uri.bucket}/{uri.key}".rstrip("/")
    try:
        info = filesystem.info(remote)
    except FileNotFoundError as exc:
        raise UriError(f"{uri} does not exist (no object or prefix with that key)") from exc
    except PermissionError as exc:
        raise UriError(f"access to {uri} was denied; check the credentials Secret and bucket policy") from exc
    key = uri.key.rstrip("/")
    data_root, meta_root = Path(cache_dir) / "s3" / uri.bucket, Path(cache_dir) / "s3-meta" / uri.bucket
    if info.get("type") == "directory":
        objects = filesystem.find(remote, detail=True)
        if not objects:
            raise UriError(f"{uri} is an empty prefix")
        if files is not None:
            relative = {name[len(remote) + 1 :]: name for name in objects}
            objects = {relative[r]: objects[relative[r]] for r in files.select(sorted(relative))}
        for name, detail in sorted(objects.items()):
            relative = name[len(uri.bucket) + 1 :]
            _fetch_object(filesystem, name, detail, data_root / relative, meta_root / relative)
        return data_root / key
    _fetch_object(filesystem, remote, info, data_root / key, meta_root / key)
    return data_root / key


def _fetch_object(fs: s3fs.S3FileSystem, remote: str, info: Mapping[str, Any], target: Path, meta: Path) -> None:
    """Download one object unless the cached copy's recorded ETag and size still match.

    The stamp and the in-progress download live in a parallel `s3-meta` tree, so the data tree holds
    only the objects (dataset readers infer formats from every file in a folder).
    """
    stamp = {"etag": str(info.get("ETag", "")).strip('"'), "size": int(info.get("size") or 0)}
    sidecar = meta.with_name(meta.name + ".etag.json")
    if target.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == stamp and target.stat().st_size == stamp["size"]:
                log.info("s3 cache hit for s3://%s", remote)
                return
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    meta.parent.mkdir(parents=True, exist_ok=True)
    partial = meta.with_name(meta.name + ".partial")
    log.info("downloading s3://%s (%d bytes)", remote, stamp["size"])
    fs.get_file(remote, str(partial))
    partial.replace(target)  # atomic (same volume): a killed download never looks complete
    sidecar.write_text(json.dumps(stamp))


def fetch_hf(
    uri: HfUri,
    cache_dir: Path,
    *,
    repo_type: Literal["dataset", "model"] = "dataset",
    token_env: str | None = None,
    env: Mapping[str, str] | None = None,
    files: FileSelection | None = None,
) -> ResolvedSource:
    """Snapshot a hub repository (the files `files` selects, else all) into `cache_dir`; returns its local
    folder and resolved commit.

    A selection is fetched in two passes: its patterns first (config and tokenizer), which also caches the
    repository's file listing for the commit, then what it picks from that listing, pinned to the commit
    (no second listing; files already cached are not fetched again). The token is read from the
    environment variable the caller names (the operator injects it from the credentials Secret); it is
    never logged. `HF_HUB_OFFLINE=1` and `HF_ENDPOINT` (a mirror) are honoured at call time: offline, only
    the cache is used, and a missing snapshot is a config error that says so.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    environ = os.environ if env is None else env
    token = environ.get(token_env) if token_env else None
    repo_type = uri.repo_type or repo_type
    # the hub library reads HF_HUB_OFFLINE and HF_ENDPOINT once at import; the caller's environment may change
    offline = constants.HF_HUB_OFFLINE or environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY

    def snapshot(revision: str | None, allow: list[str] | None) -> Path:
        return Path(
            snapshot_download(
                uri.repo_id,
                repo_type=repo_type,
                revision=revision,
                cache_dir=str(cache_dir),
                token=token or None,
                local_files_only=offline,
                allow_patterns=allow,
                endpoint=environ.get("HF_ENDPOINT") or None,
            )
        )

    try:
        path = snapshot(uri.revision, list(files.patterns) if files is not None else None)
        if files is not None and files.pick is not None:
            names = _listing(uri.repo_id, repo_type, cache_dir, path)
            path = snapshot(path.name, [glob.escape(name) for name in files.select(names)])
    except GatedRepoError as exc:
        raise UriError(f"{uri} is gated; put an accepted token in the credentials Secret") from exc
    except RevisionNotFoundError as exc:
        raise UriError(f"{uri}: revision {uri.revision!r} does not exist") from exc
    except RepositoryNotFoundError as exc:
        raise UriError(f"{uri}: {repo_type} repository not found (or private without a token)") from exc
    except HFValidationError as exc:
        raise UriError(f"{uri}: {exc}") from exc
    except LocalEntryNotFoundError as exc:
        if offline:
            raise UriError(f"{uri} is not in the cache {cache_dir} (or only partly) and HF_HUB_OFFLINE is set") from exc
        raise
    # snapshot folders are named after the commit they hold, which is what gets pinned in status
    return ResolvedSource(uri=str(uri), path=path, revision=path.name)


def _listing(repo_id: str, repo_type: str, cache_dir: Path, snapshot: Path) -> list[str]:
    """Every file of the repository at the snapshot's commit, from the listing the first pass cached; a cache
    written without one (an older huggingface_hub, offline) holds all there is to choose from."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = get_cached_repo_tree(repo_id, repo_type=repo_type, revision=snapshot.name, cache_dir=str(cache_dir))
    except CachedRepoTreeNotFoundError:
        return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    return [entry.path for entry in tree]


def resolve(
    uri: str | Uri,
    *,
    cache_dir: Path,
    pvc_root: Path = DEFAULT_PVC_ROOT,
    repo_type: Literal["dataset", "model"] = "dataset",
    token_env: str | None = None,
    env: Mapping[str, str] | None = None,
    files: FileSelection | None = None,
) -> ResolvedSource:
    """Materialise any supported URI as a local path (downloading into `cache_dir` when remote: the files
    `files` selects from a repository or prefix, else all)."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    if isinstance(parsed, HfUri):
        return fetch_hf(parsed, cache_dir, repo_type=repo_type, token_env=token_env, env=env, files=files)
    if isinstance(parsed, S3Uri):
        return ResolvedSource(uri=str(parsed), path=fetch_s3(parsed, cache_dir, s3_filesystem(env), files))
    path = local_path(parsed, pvc_root)
    if not path.exists():
        raise UriError(f"{parsed} does not exist (looked at {path})")
    return ResolvedSource(uri=str(parsed), path=path)

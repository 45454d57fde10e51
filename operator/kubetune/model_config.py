"""Read a base model's config.json for `kubetune estimate`: from a local path, a file:// URI or the Hub.

Only the config is read, never weights. hf:// goes through the Hub's plain file endpoint
(`$HF_ENDPOINT/ORG/NAME/resolve/REVISION/config.json`, the token from `HF_TOKEN` when set), so the
operator package needs no Hub client; pvc:// and s3:// locations live in a cluster, so for those the
caller passes the config with `--model-config`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUTHY = frozenset({"1", "true", "yes", "on"})


class ModelConfigError(Exception):
    """Why the config could not be read; the message says what to do instead."""


def _from_path(path: Path) -> dict[str, Any]:
    file = path / "config.json" if path.is_dir() else path
    try:
        loaded = json.loads(file.read_text())
    except OSError as error:
        raise ModelConfigError(f"{file}: cannot read: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ModelConfigError(f"{file}: not JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise ModelConfigError(f"{file}: not a model config (a JSON object)")
    return loaded


def _from_hub(repo: str, revision: str, env: Mapping[str, str]) -> dict[str, Any]:
    if env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY:
        raise ModelConfigError(f"hf://{repo}: HF_HUB_OFFLINE is set; pass --model-config PATH instead")
    endpoint = env.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    request = urllib.request.Request(f"{endpoint}/{repo}/resolve/{revision}/config.json")
    if env.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {env['HF_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            loaded = json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ModelConfigError(f"hf://{repo}: gated or private; set HF_TOKEN to a token with access") from None
        if error.code == 404:
            raise ModelConfigError(
                f"hf://{repo}@{revision}: no config.json (repository or revision not found)"
            ) from None
        raise ModelConfigError(f"hf://{repo}: the Hub answered HTTP {error.code}") from None
    except (urllib.error.URLError, TimeoutError) as error:
        raise ModelConfigError(f"hf://{repo}: cannot reach {endpoint} ({error}); pass --model-config PATH") from None
    except json.JSONDecodeError as error:
        raise ModelConfigError(f"hf://{repo}: config.json is not JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise ModelConfigError(f"hf://{repo}: config.json is not a JSON object")
    return loaded


def read_model_config(uri: str, revision: str, env: Mapping[str, str], override: Path | None = None) -> dict[str, Any]:
    """The config of `baseModel.uri` at `revision` (an `@REV` in the URI wins), or of `override`."""
    if override is not None:
        return _from_path(override)
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        return _from_path(Path(rest))
    if scheme == "hf":
        repo, _, pinned = rest.partition("@")
        return _from_hub(repo, pinned or revision, env)
    raise ModelConfigError(
        f"{uri}: a {scheme}:// model lives in the cluster; pass its config with --model-config PATH "
        "(a config.json or a model directory)"
    )

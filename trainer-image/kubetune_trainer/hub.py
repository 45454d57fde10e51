"""Publishing to the Hugging Face Hub (`output.uri: hf://ORG/NAME`): the repository, the push, the model card.

The artifact is pushed as one commit (`HfApi.create_commit`), so readers see the whole adapter or the
previous one, never half of it, and the result's URI pins that commit (`hf://ORG/NAME@SHA`) for
the Adapter and every later merge or reward model. The repository is created (private, if missing)
before any data is read, which is also the check that the token in `output.credentialsSecretRef`
can write to it: a wrong token fails the run in seconds, not after training. The endpoint is
`HF_ENDPOINT` at call time (huggingface_hub reads it only at import).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetune_trainer.context import RunContext
from kubetune_trainer.data.uris import HfUri, parse_uri
from kubetune_trainer.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_CARD = "README.md"


def hub_output(ctx: RunContext) -> HfUri | None:
    """The hf:// output of the run, or None for volume and object-store outputs."""
    parsed = parse_uri(ctx.spec.output.uri)
    return parsed if isinstance(parsed, HfUri) else None


def _api(ctx: RunContext, env: Mapping[str, str]) -> Any:
    from huggingface_hub import HfApi

    name = ctx.config.runtime.output_token_env
    token = env.get(name) if name else None
    if not token:
        raise ConfigError(
            f"output.uri {ctx.spec.output.uri}: no Hub token; set output.credentialsSecretRef to a Secret whose key "
            "holds a token with write access"
        )
    return HfApi(endpoint=env.get("HF_ENDPOINT") or None, token=token)


def ensure_repo(ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
    """Create the output repository if missing; refuses a token that cannot write it (before any training)."""
    target = hub_output(ctx)
    if target is None or os.environ.get("RANK", "0") != "0":
        return
    from huggingface_hub.errors import HfHubHTTPError

    api = _api(ctx, os.environ if env is None else env)
    try:
        api.create_repo(target.repo_id, repo_type="model", private=True, exist_ok=True)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise ConfigError(
                f"output.uri {ctx.spec.output.uri}: the token in output.credentialsSecretRef may not create or "
                f"write {target.repo_id} (HTTP {status})"
            ) from exc
        raise


def push(ctx: RunContext, staging: Path, env: Mapping[str, str] | None = None) -> str:
    """Upload every staged file in one commit; returns `hf://ORG/NAME@COMMIT`."""
    from huggingface_hub import CommitOperationAdd

    target = hub_output(ctx)
    assert target is not None, "push is only called for hf:// outputs"
    api = _api(ctx, os.environ if env is None else env)
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=str(path))
        for path in sorted(p for p in staging.rglob("*") if p.is_file())
    ]
    target_name = f"{ctx.config.target.namespace}/{ctx.config.target.name}"
    info = api.create_commit(
        target.repo_id,
        operations=operations,
        commit_message=f"kubetune: {ctx.method} adapter from FineTuneJob {target_name}",
        revision=target.revision,
    )
    pinned = str(HfUri(repo_id=target.repo_id, revision=info.oid))
    log.info("pushed artifact to %s", pinned)
    return pinned

"""The pipeline's data stage: load, normalise, check against the objective (`load`), then prep and split.

A thin orchestration over `kubetune_trainer.data` (owned by the data package): the pipeline needs
the datasets in TRL layout on the context, one digest for status, and the prep report flattened to
the `status.result.prepReport` shape (integer counts by name).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from kubetune_trainer.context import RunContext
from kubetune_trainer.data.counterfactual import augment
from kubetune_trainer.data.formats import check_objective_format, normalize
from kubetune_trainer.data.load import load_dataset_uri
from kubetune_trainer.data.prep import PrepReport, prepare_from_spec
from kubetune_trainer.errors import DataFormatError

log = logging.getLogger(__name__)


def flatten_report(report: PrepReport) -> dict[str, int]:
    """`rows_in`, `rows_out`, `removed_<reason>`, `pii_<kind>`: the integer view status can hold."""
    flat = {"rows_in": report.rows_in, "rows_out": report.rows_out}
    flat.update({f"removed_{k}": int(v) for k, v in report.removed.items()})
    flat.update({f"pii_{k}": int(v) for k, v in report.pii_found.items()})
    return flat


def _load(ctx: RunContext, uri: str) -> tuple[Any, str]:
    loaded = load_dataset_uri(
        uri,
        cache_dir=ctx.paths.cache_dir,
        pvc_root=ctx.paths.pvc_root,
        token_env=ctx.config.runtime.model_token_env,
    )
    normalized = normalize(loaded.dataset, ctx.spec.dataset.format)
    if ctx.spec.dataset.constitution is None:
        check_objective_format(normalized.format, ctx.spec.objective.type)
    elif normalized.format != "prompt":
        raise DataFormatError(
            "dataset.constitution synthesises answers for prompts: the dataset must be in format prompt "
            f"(rows with only a prompt), but it is {normalized.format!r}"
        )
    return normalized.dataset, loaded.digest


def load(ctx: RunContext) -> None:
    """Load and normalise train (and eval) data; format errors surface here, before the model download.

    Sets `train_dataset`/`eval_dataset` to the normalised (not yet prepped) data and `data_digest`.
    """
    spec = ctx.spec.dataset
    ctx.train_dataset, digest = _load(ctx, spec.train.uri)
    digests = [digest]
    if spec.eval is not None and spec.eval.uri is not None:
        ctx.eval_dataset, eval_digest = _load(ctx, spec.eval.uri)
        digests.append(eval_digest)
    # one digest for status: the train digest alone, or a digest over train and eval digests
    ctx.data_digest = (
        digest if len(digests) == 1 else "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()
    )


def prepare(ctx: RunContext) -> None:
    """Run prep (needs the tokenizer for token lengths), then hold out the eval fraction."""
    spec = ctx.spec.dataset
    tokenizer = ctx.tokenizer

    def token_length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    result = prepare_from_spec(ctx.train_dataset, spec.prep, token_length=token_length)
    ctx.prep_report = flatten_report(result.report)
    ctx.extras["prep_report"] = result.report.to_dict()
    dataset = result.dataset
    if spec.eval is not None and spec.eval.fraction is not None:
        split = dataset.train_test_split(test_size=spec.eval.fraction, seed=ctx.spec.training.seed)
        dataset, ctx.eval_dataset = split["train"], split["test"]
    elif ctx.eval_dataset is not None:
        ctx.eval_dataset = prepare_from_spec(ctx.eval_dataset, spec.prep, token_length=token_length).dataset
    if spec.prep.counterfactual is not None:
        # after the split, so no row's twin lands in the evaluation data
        dataset, added = augment(dataset, spec.prep.counterfactual.term_pairs)
        ctx.prep_report["counterfactual_added"] = added.rows_added
        ctx.prep_report["counterfactual_swaps"] = added.swaps
        ctx.extras["prep_report"]["counterfactual"] = added.to_dict()
        log.info("counterfactual augmentation: %d rows added (%d term swaps)", added.rows_added, added.swaps)
    ctx.train_dataset = dataset
    log.info("%s; training on %d rows", result.report.summary(), len(dataset))

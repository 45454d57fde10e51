"""The pipeline's data stage: load, normalise, check against the objective (`load`), then prep and split.

A thin orchestration over `kubetune_trainer.data` (owned by the data package): the pipeline needs
the datasets in TRL layout on the context, one digest for status, and the prep report flattened to
the `status.result.prepReport` shape (integer counts by name). Prep runs once per node (local rank 0)
and its result is cached on the cache volume by content (`data.prep_cache`), so other ranks and a
retried or resumed run load it instead of preparing again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from kubetune_trainer.context import RunContext
from kubetune_trainer.data.counterfactual import augment
from kubetune_trainer.data.formats import check_objective_format, normalize
from kubetune_trainer.data.load import load_dataset_uri
from kubetune_trainer.data.prep import PrepReport, run_prep, settings_from_spec
from kubetune_trainer.data.prep_cache import CachedPrep, PrepCache, is_local_leader, local_ranks, prep_key
from kubetune_trainer.data.prep_rows import TokenLengths
from kubetune_trainer.errors import DataFormatError

log = logging.getLogger(__name__)

STATUS_KEYS = 64
"""`status.result.prepReport` holds at most this many counts (the CRD's maxProperties)."""
_KEY_CHARS = re.compile(r"[^A-Za-z0-9.+-]+")


def flatten_report(report: PrepReport) -> dict[str, int]:
    """The integer view status can hold: `rows_in`, `rows_out`, `removed_<reason>`, `pii_<kind>`,
    `license_refused_<expression>` (rows each refused license dropped), `rows_without_license`.

    Past 64 keys the smallest PII and license counts are summed into `pii_other` / `license_refused_other`.
    """
    flat = {"rows_in": report.rows_in, "rows_out": report.rows_out}
    flat.update({f"removed_{k}": int(v) for k, v in report.removed.items()})
    if report.license_refused or report.license_allowed or report.rows_without_license:
        flat["rows_without_license"] = report.rows_without_license
    room = STATUS_KEYS - len(flat)
    pii = {f"pii_{k}": v for k, v in report.pii_found.items()}
    refused = {f"license_refused_{_KEY_CHARS.sub('_', k)}"[:64]: v for k, v in report.license_refused.items()}
    pii_room = min(len(pii), max(room // 2, room - len(refused)))
    flat.update(_top(pii, pii_room, "pii_other"))
    flat.update(_top(refused, room - min(len(pii), pii_room), "license_refused_other"))
    return flat


def _top(counts: dict[str, int], room: int, other: str) -> dict[str, int]:
    """At most `room` keys: the largest counts, and the rest summed under `other`."""
    if len(counts) <= room:
        return dict(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: max(room - 1, 0)])
    kept[other] = sum(v for _, v in ranked[max(room - 1, 0) :])
    return kept


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
    ctx.extras.setdefault("card_licenses", {})[uri] = loaded.card_license
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


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What token lengths depend on: the vocabulary (added tokens included) and the special tokens added."""
    probe = tokenizer("", add_special_tokens=True)["input_ids"]
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{probe}\n{vocab}".encode()).hexdigest()[:16]


def prepare(ctx: RunContext) -> None:
    """Run prep once per node (cached by content; needs the tokenizer for token lengths), then hold out
    the eval fraction."""
    spec = ctx.spec.dataset
    lengths = TokenLengths(ctx.tokenizer)
    unit = f"tokens:{tokenizer_fingerprint(ctx.tokenizer)}"
    cards: dict[str, str | None] = ctx.extras.get("card_licenses", {})
    splits = {"train": (ctx.train_dataset, spec.train.uri)}
    if ctx.eval_dataset is not None and spec.eval is not None and spec.eval.uri is not None:
        splits["eval"] = (ctx.eval_dataset, spec.eval.uri)
    settings = {
        name: settings_from_spec(spec.prep, card_license=cards.get(uri), length_unit=unit)
        for name, (_, uri) in splits.items()
    }

    def compute() -> CachedPrep:
        results = {
            name: run_prep(data, settings[name], lengths=lengths, workers=spec.prep.workers)
            for name, (data, _) in splits.items()
        }
        return CachedPrep({n: r.dataset for n, r in results.items()}, {n: r.report for n, r in results.items()})

    key = prep_key(ctx.data_digest or "", {name: s.to_dict() for name, s in settings.items()})
    prepared = PrepCache(ctx.paths.cache_dir / "prep").get_or_prepare(
        key, compute, leader=is_local_leader(), ranks_waiting=local_ranks() > 1
    )
    report = prepared.reports["train"]
    ctx.prep_report = flatten_report(report)
    ctx.extras["prep_report"] = report.to_dict()
    dataset = prepared.datasets["train"]
    if spec.eval is not None and spec.eval.fraction is not None:
        split = dataset.train_test_split(test_size=spec.eval.fraction, seed=ctx.spec.training.seed)
        dataset, ctx.eval_dataset = split["train"], split["test"]
    elif "eval" in prepared.datasets:
        ctx.eval_dataset = prepared.datasets["eval"]
    if spec.prep.counterfactual is not None:
        # after the split, so no row's twin lands in the evaluation data
        dataset, added = augment(dataset, spec.prep.counterfactual.term_pairs)
        ctx.prep_report["counterfactual_added"] = added.rows_added
        ctx.prep_report["counterfactual_swaps"] = added.swaps
        ctx.extras["prep_report"]["counterfactual"] = added.to_dict()
        log.info("counterfactual augmentation: %d rows added (%d term swaps)", added.rows_added, added.swaps)
    ctx.train_dataset = dataset
    source = "from the cache" if prepared.from_cache else "prepared"
    log.info("%s (%s); training on %d rows", report.summary(), source, len(dataset))

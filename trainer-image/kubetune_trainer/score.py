"""`python -m kubetune_trainer.score REQUEST.json RESULT.json`: score models no training job holds.

Merged adapters, intermediate checkpoints and the base itself are scored with the evaluation suites'
own log-likelihood code (`evaluate.scoring`), so a number here and a suite's number mean the same.
The preference metric is DPO's implicit reward against the base: for each pair,
`(log p(chosen) - log p_base(chosen)) - (log p(rejected) - log p_base(rejected))`; its sign is what
DPO's `rewards/accuracies` counts during training, here on held-out pairs and for any objective.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubetune.api.v1alpha1.scoring import ScoreRequest, ScoreResult, ScoreSuite
from kubetune_trainer.artifacts import load_trained
from kubetune_trainer.data.formats import normalize
from kubetune_trainer.data.load import load_dataset_path
from kubetune_trainer.data.uris import resolve
from kubetune_trainer.evaluate import scoring

log = logging.getLogger(__name__)


def preference_scores(policy: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """`policy`/`reference`: per pair, log p(chosen) - log p(rejected); ties count as half right."""
    margins = [p - r for p, r in zip(policy, reference, strict=True)]
    wins = sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins)
    return {"accuracy": wins / len(margins), "margin": statistics.fmean(margins)}


class Scorer:
    """Loads each suite once and the base model's reference log-probabilities once."""

    def __init__(self, request: ScoreRequest, cache_dir: Path) -> None:
        from transformers import AutoTokenizer

        self.request = request
        self.base_path = resolve(
            request.base_model, cache_dir=Path(request.cache_dir), pvc_root=Path(request.pvc_root), repo_type="model"
        ).path
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_path)
        self.rows = {s.name: self._rows(s, cache_dir) for s in request.suites}
        self._reference: dict[str, list[float]] = {}

    def _rows(self, suite: ScoreSuite, cache_dir: Path) -> list[dict[str, Any]]:
        dataset = load_dataset_path(Path(suite.data), cache_dir=cache_dir)
        return list(dataset if suite.metric == "accuracy" else normalize(dataset).dataset)

    def _pair_margins(self, model: Any, rows: list[dict[str, Any]]) -> list[float]:
        """log p(chosen) - log p(rejected) per preference row, summed over the answer tokens."""
        kwargs = {"max_length": self.request.max_length}
        chosen = scoring.target_logprobs(model, self.tokenizer, [(r["prompt"], r["chosen"]) for r in rows], **kwargs)
        rejected = scoring.target_logprobs(
            model, self.tokenizer, [(r["prompt"], r["rejected"]) for r in rows], **kwargs
        )
        return [c - r for (c, _), (r, _) in zip(chosen, rejected, strict=True)]

    def score(self, model: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for suite in self.request.suites:
            rows = self.rows[suite.name]
            if suite.metric == "accuracy":
                acc = scoring.multiple_choice_accuracy(model, self.tokenizer, rows, max_length=self.request.max_length)
                out[f"{suite.name}.accuracy"] = acc
            elif suite.metric == "loss":
                pairs = scoring.heldout_pairs(rows, self.tokenizer)
                out[f"{suite.name}.loss"] = scoring.nll_total(
                    model, self.tokenizer, pairs, max_length=self.request.max_length
                ).loss
            else:
                reference = self._reference.get(suite.name)
                if reference is None:
                    reference = self._reference[suite.name] = self._pair_margins(self.load(None), rows)
                for key, value in preference_scores(self._pair_margins(model, rows), reference).items():
                    out[f"{suite.name}.{key}"] = value
        return out

    def load(self, artifact: str | None) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if artifact is None:
            return AutoModelForCausalLM.from_pretrained(self.base_path, dtype=torch.float32).to(device)  # type: ignore[arg-type]
        return load_trained(Path(artifact), self.base_path).to(device)


def score_models(request: ScoreRequest) -> ScoreResult:
    with tempfile.TemporaryDirectory(prefix="kubetune-score-") as cache:
        scorer = Scorer(request, Path(cache))
        scores = {}
        for entry in request.models:
            scores[entry.name] = scorer.score(scorer.load(entry.artifact))
            log.info("scored %s: %s", entry.name, scores[entry.name])
    return ScoreResult(scores=scores)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m kubetune_trainer.score REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = ScoreRequest.model_validate_json(Path(args[0]).read_text())
    result = score_models(request)
    Path(args[1]).write_text(json.dumps(result.model_dump(mode="json", by_alias=True), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

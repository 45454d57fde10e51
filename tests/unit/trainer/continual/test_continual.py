"""Continual learning: replay mixes the right number of rows, EWC and LwF reduce forgetting.

Forgetting is measured as the rise of the loss on the reference task (the counting text) while the
model learns a new task (the alpaca echo task), with the same seed and settings with and without the
continual term.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from kubetune_dev.tiny import alpaca_rows, text_rows, write_jsonl
from kubetune_trainer.context import Hooks, RunContext
from kubetune_trainer.continual import ContinualLoss, ewc, replay
from kubetune_trainer.continual.lwf import distillation_loss
from kubetune_trainer.errors import DataFormatError
from kubetune_trainer.evaluate.scoring import heldout_pairs, nll_total
from support.trainer_fixtures import RunJob

pytestmark = [pytest.mark.unit, pytest.mark.trainer]

NEW_TASK = {"maxSteps": 10, "batchSize": 8, "learningRate": 2e-2}


class ReferenceProbe:
    """Reference-task loss of the model before training and after the artifact is published."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows
        self.before = self.after = float("nan")

    def _loss(self, ctx: RunContext) -> float:
        return nll_total(ctx.model, ctx.tokenizer, heldout_pairs(self.rows, ctx.tokenizer)).loss

    def hooks(self) -> Hooks:
        return Hooks(
            before_train=[lambda ctx: setattr(self, "before", self._loss(ctx))],
            after_result=[lambda ctx, _: setattr(self, "after", self._loss(ctx))],
        )

    @property
    def drift(self) -> float:
        return self.after - self.before


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("continual")
    return {
        "new": write_jsonl(root / "new.jsonl", alpaca_rows(40)),
        "reference": write_jsonl(root / "reference.jsonl", text_rows(24)),
        "old_new_task": write_jsonl(
            root / "old.jsonl",
            [
                {"prompt": f"old: {r['instruction']}", "completion": f"{r['output']} mail user{i}@example.com"}
                for i, r in enumerate(alpaca_rows(30))
            ],
        ),
    }


def _forgetting(
    run_job: RunJob, tasks: dict[str, Path], method: str, continual: dict[str, Any] | None, **training: Any
) -> float:
    probe = ReferenceProbe(text_rows(24))
    job = {"continual": continual} if continual else {}
    run_job(tasks["new"], method=method, hooks=probe.hooks(), job=job, training=NEW_TASK | training)
    assert probe.before == probe.before, "the probe did not run"
    return probe.drift


def test_ewc_lowers_drift_on_the_reference_task(run_job: RunJob, tasks: dict[str, Path]) -> None:
    plain = _forgetting(run_job, tasks, "full", None, learningRate=3e-3)
    reference = {"uri": f"file://{tasks['reference']}"}
    ewc_spec = {"ewc": {"lambda": 1e3, "fisherSamples": 24, "referenceDataset": reference}}
    protected = _forgetting(run_job, tasks, "full", ewc_spec, learningRate=3e-3)
    print(f"EWC full: reference-loss drift {plain:.3f} -> {protected:.3f}")
    assert plain > 0.05, f"the new task must disturb the reference task to measure anything ({plain:.3f})"
    assert protected < plain - 0.05, f"drift with EWC {protected:.3f} vs without {plain:.3f}"


class OutputProbe:
    """Next-token distributions on reference text before training and after publishing."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.logits: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None

    def _record(self, ctx: RunContext) -> None:
        batch = ctx.tokenizer(self.texts, return_tensors="pt", padding=True)
        was_training = ctx.model.training
        ctx.model.eval()
        with torch.no_grad():
            self.logits.append(ctx.model(**batch).logits.float())
        ctx.model.train(was_training)
        self.mask = batch["attention_mask"]

    def hooks(self) -> Hooks:
        return Hooks(before_train=[self._record], after_result=[lambda ctx, _: self._record(ctx)])

    @property
    def kl(self) -> float:
        before, after = self.logits
        return float(distillation_loss(after, before, self.mask, temperature=1.0))


@pytest.mark.parametrize(
    ("method", "lr", "ratio"),
    # full: a frozen copy is the teacher; lora: the teacher is the same model with the adapter disabled
    [("full", 3e-3, 0.2), ("lora", 2e-2, 0.9)],
)
def test_lwf_keeps_outputs_closer_to_the_start(
    method: str, lr: float, ratio: float, run_job: RunJob, tasks: dict[str, Path]
) -> None:
    kls = []
    for continual in (None, {"lwf": {"alpha": 0.9, "temperature": 2.0}}):
        probe = OutputProbe([r["text"] for r in text_rows(24)])
        job = {"continual": continual} if continual else {}
        run_job(tasks["new"], method=method, hooks=probe.hooks(), job=job, training=NEW_TASK | {"learningRate": lr})
        kls.append(probe.kl)
    print(f"LwF {method}: KL to the start {kls[0]:.4f} -> {kls[1]:.4f}")
    assert kls[1] < ratio * kls[0], f"{method}: KL to the starting model with LwF {kls[1]:.4f} vs without {kls[0]:.4f}"


def test_ewc_keeps_lora_predictions_on_the_reference_task_near_the_start(
    run_job: RunJob, tasks: dict[str, Path]
) -> None:
    """A LoRA run on the new task does not raise the tiny model's reference loss (it falls by 0.01-0.04 over
    seeds 1, 7 and 42), so there is no forgetting to lower; what EWC must still do is hold the model's
    next-token distributions on the reference text near the start (KL 0.025 -> 0.001-0.002 on those seeds).
    The Fisher of LoRA's A matrices is zero at the start (B is zero), so only B is pulled back."""
    reference = {"uri": f"file://{tasks['reference']}"}
    kls = []
    for continual in (None, {"ewc": {"lambda": 1e6, "fisherSamples": 24, "referenceDataset": reference}}):
        probe = OutputProbe([r["text"] for r in text_rows(24)])
        job = {"continual": continual} if continual else {}
        run_job(tasks["new"], method="lora", hooks=probe.hooks(), job=job, training=NEW_TASK | {"learningRate": 5e-3})
        kls.append(probe.kl)
    print(f"EWC lora: KL to the start on the reference text {kls[0]:.4f} -> {kls[1]:.4f}")
    assert kls[0] > 0.01, f"the new task must move the model to measure anything (KL {kls[0]:.4f})"
    assert kls[1] < 0.25 * kls[0], f"KL to the starting model with EWC {kls[1]:.4f} vs without {kls[0]:.4f}"


def test_replay_mixes_the_requested_fraction() -> None:
    train = Dataset.from_list([{"text": f"new {i}"} for i in range(40)])
    old = Dataset.from_list([{"text": f"old {i}", "license": "mit"} for i in range(7)])
    assert replay.replay_count(40, 0.25) == 10
    mixed = replay.mix(train, old, fraction=0.25, seed=1)
    texts = mixed["text"]
    assert len(mixed) == 50
    assert mixed.column_names == ["text"]
    replayed = [t for t in texts if t.startswith("old")]
    assert len(replayed) == 10
    assert set(replayed) == {f"old {i}" for i in range(7)}, "every replay row is used before any repeats"
    assert sorted(t for t in texts if t.startswith("new")) == sorted(train["text"])
    assert texts[:40] != train["text"], "old and new rows are interleaved"
    with pytest.raises(DataFormatError, match="same format"):
        replay.mix(train, Dataset.from_list([{"prompt": "p", "completion": "c"}]), fraction=0.1, seed=1)


def test_replay_in_the_pipeline(run_job: RunJob, tasks: dict[str, Path]) -> None:
    spec = {"replay": {"dataset": {"uri": f"file://{tasks['old_new_task']}"}, "fraction": 0.5}}
    dataset = {"train": {"uri": f"file://{tasks['new']}"}, "prep": {"piiFilter": {"enabled": True, "action": "redact"}}}
    ctx, _, _ = run_job(tasks["new"], job={"continual": spec, "dataset": dataset}, training={"maxSteps": 1})
    rows = ctx.train_dataset
    assert len(rows) == 60, "40 new rows + 20 replayed rows"
    replayed = [r for r in rows if r["prompt"].startswith("old:")]
    assert len(replayed) == 20
    assert all(" mail " in r["completion"] for r in replayed), "rows are kept (redacted, not dropped)"
    assert not any("@" in r["completion"] for r in replayed), "replay rows pass the same PII filter as train"
    assert any("replay: 20 rows" in note for note in ctx.notes)


class _Base:
    """Stands in for a Trainer: a fixed task loss and the attributes the gradient-accumulation rule reads."""

    model_accepts_loss_kwargs = True
    compute_loss_func = None
    current_gradient_accumulation_steps = 4

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        return torch.tensor(1.0)


class _Continual(ContinualLoss, _Base):
    pass


def test_ewc_penalty_is_divided_by_accumulation_only_when_the_trainer_does_not() -> None:
    param = torch.nn.Parameter(torch.tensor([3.0]))
    state = ewc.EwcState(params=[(param, torch.tensor([2.0]), torch.tensor([1.0]))], strength=0.5)
    assert float(state.penalty().detach()) == pytest.approx(0.5 * 0.5 * 2.0 * 4.0)  # lambda/2 * F * (3 - 1)^2 = 2
    trainer = _Continual()
    trainer.continual_ewc = state
    model = torch.nn.Linear(1, 1).train()
    # loss normalised by the tokens of all micro-batches: the Trainer will not divide, so the penalty is /4
    assert float(trainer.compute_loss(model, {}, num_items_in_batch=100)) == pytest.approx(1.0 + 2.0 / 4)
    # no token count: the Trainer divides the whole loss by 4 itself, so the penalty is added undivided
    assert float(trainer.compute_loss(model, {}, num_items_in_batch=None)) == pytest.approx(1.0 + 2.0)
    trainer.loss_is_scaled_for_ga = False  # the Trainer's explicit override wins
    assert float(trainer.compute_loss(model, {}, num_items_in_batch=100)) == pytest.approx(3.0)


def test_loss_terms_stack_and_are_scaled_once() -> None:
    """EWC (continual) on an SFT trainer that already has the bias regulariser: both terms join the task loss."""
    from types import SimpleNamespace

    from kubetune_trainer import continual
    from kubetune_trainer.objectives import bias_regularizer

    param = torch.nn.Parameter(torch.tensor([3.0]))
    state = ewc.EwcState(params=[(param, torch.tensor([2.0]), torch.tensor([1.0]))], strength=0.5)  # penalty 2
    gap = SimpleNamespace(settings=SimpleNamespace(weight=0.5), gap=lambda _model: torch.tensor(3.0))  # term 1.5
    trainer = bias_regularizer.attach(_Base(), gap)  # type: ignore[arg-type]
    trainer = continual.attach(trainer, ewc_state=state, lwf_state=None)
    assert type(trainer).__name__ == "ContinualBiasRegularized_Base"
    model = torch.nn.Linear(1, 1).train()
    assert float(trainer.compute_loss(model, {}, num_items_in_batch=100)) == pytest.approx(1.0 + (2.0 + 1.5) / 4)
    assert float(trainer.compute_loss(model.eval(), {}, num_items_in_batch=100)) == pytest.approx(1.0), "eval: none"


def test_fisher_is_the_mean_squared_gradient(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.requires_grad_(False)
    head = model.lm_head.weight.requires_grad_(True)
    pairs = [("", "count one two"), ("repeat", " red blue")]
    state = ewc.estimate_fisher(model, tokenizer, pairs, samples=10, strength=1.0, max_length=64)
    assert len(state.params) == 1
    expected = torch.zeros_like(head)
    for context, target in pairs:
        model.zero_grad()
        labels_loss = nll_total(model, tokenizer, [(context, target)])
        ids = tokenizer(context + target)["input_ids"] if context else tokenizer(target)["input_ids"]
        inputs = torch.tensor([ids])
        labels = inputs.clone()
        labels[:, : len(tokenizer(context)["input_ids"]) if context else 1] = -100
        model(input_ids=inputs, labels=labels).loss.backward()
        expected += head.grad**2
        assert labels_loss.tokens == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(state.params[0][1], expected / 2)
    assert torch.equal(state.params[0][2], head.detach())


def test_ewc_wraps_preference_objectives_too(run_job: RunJob, data_files: dict[str, Path]) -> None:
    """The penalty needs no model outputs, so it applies to DPO (whose loss is not a token loss) as well."""
    seen: dict[str, Any] = {}

    def keep_trainer(_ctx: RunContext, trainer: Any) -> dict[str, float]:
        seen["trainer"] = trainer
        return {}

    reference = {"uri": f"file://{data_files['preference']}"}
    ctx, _, logs = run_job(
        data_files["preference"],
        hooks=Hooks(evaluate=keep_trainer),
        job={
            "objective": {"type": "dpo"},
            "dataset": {"train": reference, "prep": {"maxSeqLength": 64}},
            "continual": {"ewc": {"lambda": 10.0, "fisherSamples": 8, "referenceDataset": reference}},
        },
        training={"maxSteps": 3},
    )
    trainer = seen["trainer"]
    assert isinstance(trainer, ContinualLoss)
    assert type(trainer).__name__ == "ContinualDPOTrainer"
    assert trainer.continual_ewc is not None
    assert float(trainer.continual_ewc.penalty().detach()) > 0, "the adapter moved, so the penalty is positive"
    assert ctx.metrics["train.steps"] == 3
    assert len(logs.series("rewards/margins")) == 3

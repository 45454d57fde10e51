"""Every CEL rule in the generated CRDs has a valid and an invalid example, evaluated with cel-python.

The API-server side of the same rules is proven in tests/integration (the real kube-apiserver).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pytest

from kubetune.api.base import cel_holds
from kubetune.api.crd.build import all_crds, spec_immutable_once_started
from kubetune.api.problems import UNIONS
from kubetune.api.v1alpha1.finetunejob import FineTuneJob
from kubetune.api.v1alpha1.trainer_config import TrainerConfig

pytestmark = pytest.mark.unit

SPEC = {
    "baseModel": {"uri": "hf://org/model"},
    "dataset": {"train": {"uri": "file:///d.jsonl"}, "format": "auto"},
    "method": {"type": "lora", "lora": {"rank": 8}},
    "objective": {"type": "sft"},
    "distributed": {"strategy": "auto", "zeroStage": 2, "offload": "none"},
    "output": {"uri": "file:///out"},
}


def spec(**overrides: Any) -> dict[str, Any]:
    out = {**SPEC, **overrides}
    if "format" in overrides:
        out["dataset"] = {**SPEC["dataset"], "format": overrides.pop("format")}
        out.pop("format")
    return out


# message prefix -> (valid object, invalid object), both at the node the rule is attached to
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "method.partial trains nothing": (
        {"trainableLayers": 0, "trainableModules": ["lm_head"]},
        {"trainableLayers": 0, "trainableModules": []},
    ),
    "merge.sources lists an adapter twice": (
        {"sources": [{"name": "a"}, {"name": "b"}], "combination": "linear"},
        {"sources": [{"name": "a"}, {"name": "a"}], "combination": "linear"},
    ),
    "merge.combination ties, dare_linear and dare_ties need merge.density": (
        {"sources": [], "combination": "dare_ties", "density": 0.5},
        {"sources": [], "combination": "ties"},
    ),
    "merge.density only applies": (
        {"sources": [], "combination": "ties", "density": 0.5},
        {"sources": [], "combination": "linear", "density": 0.5},
    ),
    "set exactly one of artifact": ({"artifact": {"uri": "s3://a/b"}}, {}),
    "dataset.eval needs exactly one of uri": ({"fraction": 0.1}, {"uri": "file:///e", "fraction": 0.1}),
    "continual is empty": ({"lwf": {"alpha": 0.5}}, {}),
    "objective.rlhf.reward needs a reward source": ({"builtin": ["length"]}, {"builtin": []}),
    "objective.rlhf.constraints: constraint names must be unique": (
        {"constraints": [{"name": "a"}, {"name": "b"}]},
        {"constraints": [{"name": "a"}, {"name": "a"}]},
    ),
    "objective.rlhf.constraints: builtin blocked-terms needs terms or patterns": (
        {"builtin": "blocked-terms", "patterns": ["x"]},
        {"builtin": "blocked-terms", "terms": []},
    ),
    "objective.rlhf.constraints: builtin length needs maxTokens": (
        {"builtin": "length", "maxTokens": 64},
        {"builtin": "blocked-terms", "maxTokens": 64},
    ),
    "objective.rlhf.constraints: terms and patterns only apply": (
        {"builtin": "blocked-terms", "terms": ["x"]},
        {"builtin": "length", "maxTokens": 64, "patterns": ["x"]},
    ),
    "objective.rlhf.constraints: set one cost per constraint": (
        {"adapterRef": {"name": "harm-cost"}},
        {"builtin": "length", "maxTokens": 64, "adapterRef": {"name": "harm-cost"}},
    ),
    "evaluation.suites judge: a classifier adapterRef replaces the rules": (
        {"adapterRef": {"name": "refusal-classifier"}, "patterns": []},
        {"adapterRef": {"name": "refusal-classifier"}, "patterns": ["nope"]},
    ),
    "dataset.constitution: the writer is model or adapterRef": (
        {"principles": ["p"], "adapterRef": {"name": "writer"}},
        {"principles": ["p"], "adapterRef": {"name": "writer"}, "model": "hf://org/writer"},
    ),
    "tracking is empty": ({"tensorboard": {}}, {}),
    "tracking.tensorboard.logDir must be": ({"logDir": "pvc://runs/tb"}, {"logDir": "s3://runs/tb"}),
    "tracking.mlflow.trackingUri must not carry credentials": (
        {"trackingUri": "https://mlflow.example/x@y"},
        {"trackingUri": "https://user:pass@mlflow.example"},
    ),
    "distributed.offload requires": (
        {"strategy": "deepspeed", "offload": "cpu"},
        {"strategy": "ddp", "offload": "cpu"},
    ),
    "resources.nodes > 1 requires": ({"nodes": 2, "gpus": 8}, {"nodes": 2, "gpus": 0}),
    "resources.workloadPriorityClassName requires resources.queueName": (
        {"nodes": 1, "gpus": 1, "queueName": "team-a", "workloadPriorityClassName": "high"},
        {"nodes": 1, "gpus": 1, "workloadPriorityClassName": "high"},
    ),
    "evaluation.suites: metric accuracy needs a dataset": (
        {"name": "mc", "metric": "accuracy", "dataset": {"uri": "file:///mc"}},
        {"name": "mc", "metric": "accuracy"},
    ),
    "evaluation.suites: set exactly one of metric": (
        {"name": "arc", "lmEval": {"tasks": ["arc_easy"]}},
        {"name": "arc", "metric": "loss", "lmEval": {"tasks": ["arc_easy"]}},
    ),
    "evaluation.suites: lmEval tasks bring their own data": (
        {"name": "arc", "lmEval": {"tasks": ["local"], "include": {"uri": "file:///tasks"}}},
        {"name": "arc", "lmEval": {"tasks": ["local"]}, "dataset": {"uri": "file:///tasks"}},
    ),
    "output.uri hf://ORG/NAME pushes to the Hub": (
        {"uri": "hf://org/adapter", "credentialsSecretRef": {"name": "hub-write"}},
        {"uri": "hf://org/adapter"},
    ),
    "evaluation.suites: metric bias-gap needs termPairs": (
        {"name": "fair", "metric": "bias-gap", "termPairs": [["he", "she"]]},
        {"name": "fair", "metric": "bias-gap"},
    ),
    "termPairs: the two terms of a pair must differ": ({"termPairs": [["he", "she"]]}, {"termPairs": [["he", "he"]]}),
    "termPairs: a term may appear in only one pair": (
        {"termPairs": [["he", "she"], ["him", "her"]]},
        {"termPairs": [["him", "her"], ["his", "her"]]},
    ),
    "evaluation.suites: metrics refusal-rate and over-refusal need a dataset": (
        {"name": "harm", "metric": "refusal-rate", "dataset": {"uri": "file:///harmful.jsonl"}},
        {"name": "harm", "metric": "refusal-rate"},
    ),
    "evaluation.suites: refusal only applies": (
        {"name": "harm", "metric": "over-refusal", "refusal": {"patterns": ["nope"]}},
        {"name": "harm", "metric": "loss", "refusal": {"patterns": ["nope"]}},
    ),
    "evaluation.suites: suite names must be unique": (
        {"suites": [{"name": "a"}, {"name": "b"}]},
        {"suites": [{"name": "a"}, {"name": "a"}]},
    ),
    "evaluation.gate.minScores names a suite": (
        {"suites": [{"name": "mc"}], "gate": {"minScores": {"mc": 0.5}}},
        {"suites": [{"name": "mc"}], "gate": {"minScores": {"other": 0.5}}},
    ),
    "evaluation.gate.maxRegression needs": (
        {"suites": [{"name": "a", "compareToBase": True}], "gate": {"maxRegression": 0.1, "minScores": {}}},
        {"suites": [{"name": "a", "compareToBase": False}], "gate": {"maxRegression": 0.1, "minScores": {}}},
    ),
    "objective dpo, ipo, orpo and reward need preference data": (
        spec(objective={"type": "dpo"}, format="preference"),
        spec(objective={"type": "dpo"}, format="text"),
    ),
    "objective kto needs labelled data": (
        spec(objective={"type": "kto"}, format="kto"),
        spec(objective={"type": "kto"}, format="preference"),
    ),
    "objective rlhf samples completions": (
        spec(objective={"type": "rlhf"}, format="prompt"),
        spec(objective={"type": "rlhf"}, format="messages"),
    ),
    "objective sft cannot use preference": (spec(format="messages"), spec(format="kto")),
    "dataset.constitution turns prompts into SFT rows or preference pairs": (
        spec(objective={"type": "dpo"}, dataset={"format": "prompt", "constitution": {"principles": ["p"]}}),
        spec(objective={"type": "rlhf"}, dataset={"format": "prompt", "constitution": {"principles": ["p"]}}),
    ),
    "preflight.gpuMemory is only read by the memory check": (
        {"memoryCheck": "warn", "gpuMemory": "80Gi"},
        {"memoryCheck": "off", "gpuMemory": "80Gi"},
    ),
    "preflight.gpuMemory is the memory of one GPU": (
        spec(resources={"gpus": 1}, preflight={"gpuMemory": "24Gi"}),
        spec(resources={"gpus": 0}, preflight={"gpuMemory": "24Gi"}),
    ),
    "method qlora cannot be sharded": (
        spec(method={"type": "qlora"}, distributed={"strategy": "deepspeed", "zeroStage": 2, "offload": "none"}),
        spec(method={"type": "qlora"}, distributed={"strategy": "deepspeed", "zeroStage": 3, "offload": "none"}),
    ),
    "dataset.prep.packing applies to objective sft only": (
        spec(dataset={"train": {"uri": "file:///d"}, "format": "auto", "prep": {"packing": True}}),
        spec(
            dataset={"train": {"uri": "file:///d"}, "format": "preference", "prep": {"packing": True}},
            objective={"type": "dpo"},
        ),
    ),
    "training.ligerKernel needs GPUs": (
        spec(training={"ligerKernel": True}, resources={"gpus": 1}),
        spec(training={"ligerKernel": True}, resources={"gpus": 0}),
    ),
    "output.uri hf://ORG/NAME receives only the finished artifact": (
        spec(output={"uri": "hf://org/adapter"}, checkpointing={"storage": {"uri": "s3://checkpoints/adapter/"}}),
        spec(output={"uri": "hf://org/adapter"}, checkpointing={"storage": {}}),
    ),
    "training.neftuneNoiseAlpha cannot be used with objective rlhf": (
        spec(training={"neftuneNoiseAlpha": 5.0}),
        spec(training={"neftuneNoiseAlpha": 5.0}, objective={"type": "rlhf"}, format="prompt"),
    ),
}


def crd_rules(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for value in node.values():
            yield from crd_rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from crd_rules(value)


def union_messages() -> set[str]:
    return {rule.message for union in UNIONS for rule in union.block_rules()}


def example_for(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    matches = [pair for prefix, pair in EXAMPLES.items() if message.startswith(prefix)]
    assert len(matches) == 1, f"no single example pair for rule: {message}"
    return matches[0]


ALL_RULES = [rule for crd in all_crds().values() for rule in crd_rules(crd)]
PLAIN_RULES = [
    r for r in ALL_RULES if r["message"] not in union_messages() and r != spec_immutable_once_started().as_crd()
]


def test_every_crd_rule_is_covered_by_examples_or_generated_checks() -> None:
    assert len(ALL_RULES) > 25
    for rule in PLAIN_RULES:
        example_for(rule["message"])


@pytest.mark.parametrize("rule", PLAIN_RULES, ids=[r["message"][:50] for r in PLAIN_RULES])
def test_rule_accepts_valid_and_rejects_invalid(rule: dict[str, str]) -> None:
    valid, invalid = example_for(rule["message"])
    assert cel_holds(rule["rule"], valid)
    assert not cel_holds(rule["rule"], invalid)


@pytest.mark.parametrize("union", UNIONS, ids=[u.field for u in UNIONS])
def test_union_block_rules_follow_the_variants(union: Any) -> None:
    rules = union.block_rules()
    assert rules
    for prop, (allowed, required) in union.blocks().items():
        for tag in union.tags:
            with_block = {"type": tag, prop: {}}
            without_block = {"type": tag}
            for rule in rules:
                if set(allowed) != set(union.tags) and rule.message == union.forbidden_message(prop):
                    assert cel_holds(rule.rule, with_block) == (tag in allowed)
                    assert cel_holds(rule.rule, without_block)
                if required and rule.message == union.required_message(prop):
                    assert cel_holds(rule.rule, without_block) == (tag not in required)
                    assert cel_holds(rule.rule, with_block)


def _transition(rule: str, new: dict[str, Any], old: dict[str, Any]) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    return bool(program.evaluate({"self": celpy.json_to_cel(new), "oldSelf": celpy.json_to_cel(old)}))


def test_spec_is_immutable_once_started_except_suspend() -> None:
    rule = spec_immutable_once_started().rule
    started = {"spec": {**SPEC, "suspend": False}, "status": {"startTime": "2026-01-01T00:00:00Z"}}
    not_started = {"spec": {**SPEC, "suspend": False}}
    changed = {"spec": {**SPEC, "suspend": False, "method": {"type": "lora", "lora": {"rank": 64}}}}
    suspended = {"spec": {**SPEC, "suspend": True}}
    added = {"spec": {**SPEC, "suspend": False, "continual": {"lwf": {}}}}
    assert _transition(rule, changed, not_started)
    assert _transition(rule, suspended, started)
    assert not _transition(rule, changed, started)
    assert not _transition(rule, added, started)


def test_trainer_config_mode_rules() -> None:
    target = {"kind": "FineTuneJob", "namespace": "ml", "name": "x"}
    with pytest.raises(ValueError, match="mode merge needs merge"):
        TrainerConfig.model_validate({"mode": "merge", "target": target})
    with pytest.raises(ValueError, match="mode train needs job"):
        TrainerConfig.model_validate({"mode": "train", "target": target})


def test_verdicts_are_remembered_by_digest_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator validates unchanged objects on every reconcile; the interpreter runs once per object version."""
    from kubetune.api import base

    evaluated: list[str] = []
    compiled = base._compiled

    class Counting:
        def __init__(self, rule: str) -> None:
            self.rule = rule

        def evaluate(self, activation: Any) -> Any:
            evaluated.append(self.rule)
            return compiled(self.rule).evaluate(activation)

    monkeypatch.setattr(base, "_compiled", Counting)
    monkeypatch.setattr(base, "VERDICTS_KEPT", 2)
    monkeypatch.setattr(base, "_verdicts", base.OrderedDict())
    rule = "self.rank > 0 && self.rank < 7"
    assert cel_holds(rule, {"rank": 3}) is True
    assert cel_holds(rule, {"rank": 3}) is True
    assert cel_holds(rule, {"rank": 9}) is False
    assert cel_holds(rule, {"rank": 9}) is False
    assert len(evaluated) == 2
    cel_holds(rule, {"rank": 4})  # a third verdict pushes out the least recently used ({"rank": 3})
    cel_holds(rule, {"rank": 3})
    assert len(evaluated) == 4
    assert len(base._verdicts) == 2


def test_an_idle_operator_forgets_its_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verdicts of runs that are gone would outlive them (rules that read an output path add one per run)."""
    from kubetune.api import base

    monkeypatch.setattr(base, "_verdicts", base.OrderedDict())
    for uri in ("pvc://out/a", "pvc://out/b"):
        assert cel_holds("!self.uri.startsWith('hf://')", {"uri": uri})
    assert base.forget_verdicts() == 2
    assert len(base._verdicts) == 0
    assert cel_holds("!self.uri.startsWith('hf://')", {"uri": "pvc://out/a"}), "evaluated again"


@pytest.mark.parametrize(
    ("rule", "paths"),
    [
        ("self.rank > 0 && self.rank < 7", (("rank",),)),
        ("!self.uri.startsWith('hf://') || has(self.credentialsSecretRef)", (("credentialsSecretRef",), ("uri",))),
        (
            "self.objective.type != 'sft' || self.dataset.format in ['auto']",
            (("dataset", "format"), ("objective", "type")),
        ),
        ("self.size() > 0", None),
        ("self.all(k, k != '')", None),
        ("self['a'] == 1", None),
    ],
)
def test_the_fields_a_rule_reads(rule: str, paths: tuple[tuple[str, ...], ...] | None) -> None:
    from kubetune.api.base import read_paths

    assert read_paths(rule) == paths


def test_objects_that_differ_only_where_a_rule_does_not_read_share_its_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of runs with one spec shape adds no verdicts per run for rules that do not read their names."""
    from kubetune.api import base

    monkeypatch.setattr(base, "_verdicts", base.OrderedDict())
    rule = "!has(self.preflight) || self.resources.gpus > 0"
    for name in ("a", "b", "c"):
        assert cel_holds(rule, {"name": name, "resources": {"gpus": 1}, "preflight": {}})
    assert len(base._verdicts) == 1
    assert not cel_holds(rule, {"name": "d", "resources": {"gpus": 0}, "preflight": {}})
    assert cel_holds(rule, {"name": "e", "resources": {"gpus": 0}})
    assert cel_holds(rule, {"name": "f", "resources": {"gpus": 0}, "preflight": None}) is not cel_holds(
        rule, {"name": "g", "resources": {"gpus": 0}}
    ), "null and absent are different reads (has() tells them apart)"
    assert len(base._verdicts) == 3, "a preflight of {} and of null are both there: one verdict"


def test_a_field_read_only_through_has_is_remembered_by_its_presence(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer config's `job` differs for every run; the rule asks only whether it is there."""
    from kubetune.api import base

    monkeypatch.setattr(base, "_verdicts", base.OrderedDict())
    rule = "self.mode != 'train' || (has(self.job) && !has(self.merge))"
    assert base.presence_paths(rule) == {("job",), ("merge",)}
    for name in ("a", "b", "c"):
        assert cel_holds(rule, {"mode": "train", "job": {"name": name, "output": f"pvc://out/{name}"}})
    assert len(base._verdicts) == 1
    assert not cel_holds(rule, {"mode": "train", "job": {"name": "d"}, "merge": {}})
    assert not cel_holds(rule, {"mode": "train"})
    assert len(base._verdicts) == 3
    assert base.presence_paths("has(self.uri) && self.uri.startsWith('s3://')") == frozenset(), "read by value too"


def test_presence_of_a_nested_field_tells_an_absent_parent_from_an_empty_one() -> None:
    """`has(self.a.b)` is false when `a` has no `b`; with no `a`, or an `a` that is a string, the API server's CEL
    errors: those reads never share a remembered verdict, while what `b`'s siblings hold does not matter."""
    from kubetune.api import base

    rule = "!has(self.a.b) || self.c > 0"
    reads = ({"a": {}, "c": 0}, {"c": 0}, {"a": "b", "c": 0}, {"a": {"b": None}, "c": 0})
    assert len({base._read_digest(rule, value) for value in reads}) == 4
    assert base._read_digest(rule, {"a": {}, "c": 0}) == base._read_digest(rule, {"a": {"x": 1}, "c": 0})
    assert base._read_digest(rule, {"a": {"b": 1}, "c": 0}) == base._read_digest(rule, {"a": {"b": 2}, "c": 0})


def test_every_rule_is_compiled_at_startup_so_no_reconcile_compiles_one() -> None:
    """The operator's startup compiles them all (long-lived objects made before any burst, not in the middle of one)."""
    from kubetune.api import base

    base._compiled.cache_clear()
    count = base.compile_all_rules()
    assert count == base._compiled.cache_info().currsize >= 40
    FineTuneJob.model_validate({"metadata": {"name": "x"}, "spec": SPEC})
    assert base._compiled.cache_info().currsize == count

"""Every example is valid and every invalid fixture fails with exactly its documented message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.cli import check_document, main

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "tests/fixtures/invalid").glob("*.yaml"))

REQUIRED_EXAMPLES = {
    *(f"method-{m}" for m in ("full", "partial", "lora", "dora", "qlora", "adapter", "prefix", "prompt", "ia3")),
    *(f"objective-{o}" for o in ("sft", "dpo", "ipo", "kto", "orpo", "reward", "rlhf-rloo", "rlhf-grpo")),
    *(f"continual-{c}" for c in ("ewc", "replay", "lwf")),
    "distributed-multinode-zero3",
    "queued-kueue",
    "eval-gated",
    "eval-lm-harness",
    "output-hub",
    "training-speedups",
    "adapter-merge",
}


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <message>'"
    return first.removeprefix("# expect: ")


def test_examples_cover_every_method_objective_and_feature() -> None:
    assert {p.stem for p in EXAMPLES} >= REQUIRED_EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_valid_and_says_when_to_use_it(path: Path) -> None:
    assert path.read_text().startswith("# "), "each example starts with a comment saying when to use it"
    model, problems = check_document(yaml.safe_load(path.read_text()))
    assert problems == []
    assert model is not None


def test_at_least_twenty_invalid_fixtures() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_fails_with_its_message(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"one problem per fixture, got: {out}"
    assert lines[0].startswith(f"{path}: ")
    assert expected_message(path) in lines[0]
    assert "Traceback" not in out


def test_cli_validates_all_examples_in_one_call() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "validate", *map(str, EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(EXAMPLES)} object(s) valid" in result.stderr

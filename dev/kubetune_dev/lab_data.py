"""The code labs' datasets (labs/data/*.jsonl), generated from fixed tables so they can be regrown.

`python -m kubetune_dev.lab_data labs/data` rewrites them; a contract test checks the committed files
match. The tasks are synthetic on purpose: small enough that the tiny 2-layer model of
`kubetune_dev.tiny` learns them on a CPU in tens of steps, yet real tasks with held-out questions:

* docks (the "domain QA" set, task A): a warehouse routes every item of one colour to one dock;
  questions name an item and a colour, the answer is the dock. Held-out questions use items never
  seen in training, so scoring them measures the colour -> dock rule, not memorised rows.
* tags (task B): every tag number has one colour; the held-out questions use other shelf words.
* prefs: the docks questions with a correct (chosen) and a wrong (rejected) dock, for preference
  tuning; held-out pairs use the held-out items, and `prefs-prompts` are the training questions with
  their chosen answer as `reference`, for online RL with the verifiable `reference-match` reward.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
DOCK_OF = dict(zip(COLORS, ["three", "seven", "one", "five", "nine", "two", "eight", "six"], strict=True))
"""Task A's rule: colour -> dock."""
TAG_COLOR = dict(
    zip(NUMBERS[:8], ["blue", "white", "red", "orange", "green", "black", "purple", "yellow"], strict=True)
)
"""Task B's rule: tag number -> colour."""
ITEMS = ["box", "crate", "bag", "case", "drum", "sack"]
TRAIN_ITEMS, HELDOUT_ITEMS = ITEMS[:4], ITEMS[4:]
SHELVES = ["rack", "bin", "shelf", "cart", "tray", "hook"]
TRAIN_SHELVES, HELDOUT_SHELVES = SHELVES[:4], SHELVES[4:]
CHOICES = 4


def dock_question(color: str, item: str) -> str:
    return f"Q: which dock takes the {color} {item}? A:"


def tag_question(number: str, shelf: str) -> str:
    return f"Q: what colour is tag {number} on the {shelf}? A:"


def _rotated(options: list[str], correct: str, seed: int) -> tuple[list[str], int]:
    """`CHOICES` options with the correct one at a position that varies by row (no positional bias)."""
    others = [o for o in options if o != correct]
    picked = [others[(seed + 3 * k) % len(others)] for k in range(CHOICES - 1)]
    position = seed % CHOICES
    return [*picked[:position], correct, *picked[position:]], position


def _qa(questions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"prompt": q, "completion": f" {a}"} for q, a in questions]


def _mc(questions: list[tuple[str, str]], options: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, (question, answer) in enumerate(questions):
        choices, position = _rotated(options, answer, i)
        rows.append({"question": question, "choices": choices, "answer": position})
    return rows


def dock_questions(items: list[str]) -> list[tuple[str, str]]:
    return [(dock_question(c, item), f"dock {DOCK_OF[c]}") for item in items for c in COLORS]


def tag_questions(shelves: list[str]) -> list[tuple[str, str]]:
    return [(tag_question(n, shelf), TAG_COLOR[n]) for shelf in shelves for n in TAG_COLOR]


def preference_rows(items: list[str]) -> list[dict[str, str]]:
    rows = []
    for i, (question, answer) in enumerate(dock_questions(items)):
        wrong = [d for d in DOCK_OF.values() if f"dock {d}" != answer]
        rows.append({"prompt": question, "chosen": f" {answer}", "rejected": f" dock {wrong[i % len(wrong)]}"})
    return rows


def datasets() -> dict[str, list[dict[str, Any]]]:
    docks = sorted(set(DOCK_OF.values()), key=NUMBERS.index)
    dock_options = [f"dock {d}" for d in docks]
    return {
        "docks-train": _qa(dock_questions(TRAIN_ITEMS)),
        "docks-eval": _qa(dock_questions(HELDOUT_ITEMS)),
        "docks-eval-mc": _mc(dock_questions(HELDOUT_ITEMS), dock_options),
        "tags-train": _qa(tag_questions(TRAIN_SHELVES)),
        "tags-eval": _qa(tag_questions(HELDOUT_SHELVES)),
        "tags-eval-mc": _mc(tag_questions(HELDOUT_SHELVES), COLORS),
        "prefs-train": preference_rows(TRAIN_ITEMS),
        "prefs-eval": preference_rows(HELDOUT_ITEMS),
        "prefs-prompts": [{"prompt": r["prompt"], "reference": r["chosen"]} for r in preference_rows(TRAIN_ITEMS)],
    }


def render(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in datasets().items():
        path = directory / f"{name}.jsonl"
        path.write_text(render(rows))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kubetune_dev.lab_data DIRECTORY", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

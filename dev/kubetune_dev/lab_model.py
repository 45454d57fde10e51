"""The code labs' base model: the tiny Llama of `kubetune_dev.tiny`, pretrained briefly on the labs' formats.

Parameter-efficient methods adapt a model that already knows the language of the task; a randomly
initialised base has nothing for a low-rank update to steer, so a PEFT sweep on it would measure the
wrong thing. This "pretraining" teaches the tiny model the shape of the labs' questions and answers
(after "which dock" comes " dock <number>", after "what colour" a colour) on rows whose answers are
drawn at random, so it knows the format and the answer vocabulary but none of the rules the labs'
tasks then teach. Built once per content hash into the test-model cache, atomically, like the tiny
model itself (`python -m kubetune_dev.lab_model DIR` copies it to DIR).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from kubetune_dev import lab_data
from kubetune_dev.tiny import cache_root, text_rows, tiny_model_dir

_VERSION = "1"
STEPS = 300
BATCH = 16
LEARNING_RATE = 3e-3
PRETRAIN_ITEMS = ["parcel", "tote", "carton", "basket", "tin", "jar"]
PRETRAIN_SHELVES = ["desk", "wall", "door", "table", "floor", "bench"]
"""Words the labs' train and held-out questions never use, so no lab row is seen in pretraining."""


def corpus(seed: int = 0) -> list[str]:
    """Lab-shaped questions with random answers, plus the tiny model's counting text."""
    rng = random.Random(seed)
    docks = sorted(set(lab_data.DOCK_OF.values()))
    rows = []
    for _ in range(8):
        for item in PRETRAIN_ITEMS:
            for color in lab_data.COLORS:
                rows.append(f"{lab_data.dock_question(color, item)} dock {rng.choice(docks)}")
        for shelf in PRETRAIN_SHELVES:
            for number in lab_data.TAG_COLOR:
                rows.append(f"{lab_data.tag_question(number, shelf)} {rng.choice(lab_data.COLORS)}")
    rows += [r["text"] for r in text_rows(96)]
    rng.shuffle(rows)
    return rows


def _pretrain(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    texts = [t + tokenizer.eos_token for t in corpus()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    for step in range(STEPS):
        batch = tokenizer(texts[(step * BATCH) % len(texts) :][:BATCH], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "pretraining.json").write_text(
        json.dumps({"steps": STEPS, "batch": BATCH, "learningRate": LEARNING_RATE, "finalLoss": float(loss)})
    )


def lab_model_dir() -> Path:
    """Path of the cached pretrained lab model (built on first use; safe under concurrent builders)."""
    source = tiny_model_dir()
    key = hashlib.sha256(json.dumps([_VERSION, source.name, corpus(), STEPS, BATCH, LEARNING_RATE]).encode())
    target = cache_root() / f"lab-llama-{key.hexdigest()[:12]}"
    if (target / "model.safetensors").is_file() and (target / "pretraining.json").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _pretrain(source, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "pretraining.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m kubetune_dev.lab_model [DIRECTORY]", file=sys.stderr)
        return 2
    built = lab_model_dir()
    if args:
        shutil.copytree(built, args[0], dirs_exist_ok=True)
    print(args[0] if args else built)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tiny Llama and a locally trained tokenizer, built once and cached on disk, plus toy datasets.

Used by the tests and by `make demo` (`python -m kubetune_dev.tiny --model DIR --data FILE`), so
the demo trains the same learnable toy task the tests prove.

No hub access: the tokenizer is a byte-level BPE trained on the toy corpus (as in TRAINER-NOTES),
the model is a 2-layer, 64-wide Llama built from its config with a fixed seed. The directory is
keyed by a hash of everything that shapes it and written atomically, so concurrent test processes
share one copy and never see a half-written model. The toy data has a learnable pattern (counting
and repetition), so a few optimizer steps visibly lower the loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "LM_EVAL_TASK",
    "VOCAB_SIZE",
    "alpaca_rows",
    "cache_root",
    "counting_choice_rows",
    "kto_rows",
    "main",
    "message_rows",
    "preference_rows",
    "prompt_rows",
    "text_rows",
    "tiny_model_dir",
    "write_jsonl",
    "write_lm_eval_task",
]

VOCAB_SIZE = 512
HIDDEN = 64
LAYERS = 2
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<s>assistant: {% generation %}{{ m['content'] }}</s>"
    "{% endgeneration %}{% else %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
_VERSION = "1"
SHAPE = {"hidden": HIDDEN, "layers": LAYERS, "heads": 4, "kv_heads": 2, "intermediate": 2 * HIDDEN, "positions": 256}
"""The tiny Llama's shape; `tiny_model_dir(**shape)` overrides keys (intermediate defaults to 2 x hidden)."""


def cache_root() -> Path:
    """Next to the DeepSpeed op cache: one place CI can keep between runs."""
    return Path(os.environ.get("KUBETUNE_TEST_CACHE", Path.home() / ".cache" / "kubetune" / "test-models"))


def text_rows(n: int = 48) -> list[dict[str, str]]:
    """Counting sequences from varying starts: the next word is always predictable from the last."""
    rows = []
    for i in range(n):
        start = i % 6
        words = NUMBERS[start : start + 6]
        rows.append({"text": f"count {' '.join(words)} done {COLORS[(i // 6) % len(COLORS)]}"})
    return rows


def alpaca_rows(n: int = 48) -> list[dict[str, str]]:
    """Echo task: the completion repeats the two colours of the instruction."""
    rows = []
    for i in range(n):
        a, b = COLORS[i % len(COLORS)], COLORS[(i // len(COLORS) + i + 1) % len(COLORS)]
        rows.append({"instruction": f"repeat {a} {b}", "output": f"{a} {b} {a} {b}"})
    return rows


def message_rows(n: int = 48) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        a, b = COLORS[i % len(COLORS)], NUMBERS[(i // len(COLORS)) % len(NUMBERS)]
        rows.append(
            {"messages": [{"role": "user", "content": f"echo {a} {b}"}, {"role": "assistant", "content": f"{a} {b}"}]}
        )
    return rows


def preference_rows(n: int = 48) -> list[dict[str, str]]:
    """Echo the two colours (chosen) versus an unrelated pair of numbers (rejected)."""
    rows = []
    for i in range(n):
        a, b = COLORS[i % len(COLORS)], COLORS[(i // len(COLORS) + i + 1) % len(COLORS)]
        x, y = NUMBERS[i % len(NUMBERS)], NUMBERS[(i + 5) % len(NUMBERS)]
        rows.append({"prompt": f"repeat {a} {b}", "chosen": f" {a} {b} {a} {b}", "rejected": f" {x} {y} {x} {y}"})
    return rows


def kto_rows(n: int = 48) -> list[dict[str, Any]]:
    """The preference pairs unpaired: each chosen answer desirable, each rejected one not."""
    rows = []
    for row in preference_rows(n // 2):
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return rows


def prompt_rows(n: int = 32) -> list[dict[str, str]]:
    """Distinct prompts (prep's exact dedup would otherwise shrink the set below one generation batch)."""
    return [{"prompt": f"count {NUMBERS[i % 6]} {NUMBERS[i % 6 + 1]} {COLORS[i // 6 % len(COLORS)]}"} for i in range(n)]


LM_EVAL_TASK = "kubetune_tiny_counting"
"""The lm-evaluation-harness task `write_lm_eval_task` writes (a custom task YAML with local data)."""


def counting_choice_rows(n: int = 10) -> list[dict[str, Any]]:
    """Multiple choice on the counting pattern of `text_rows`: the next number, a colour or `done`."""
    rows = []
    for i in range(n):
        start = i % 6
        words = NUMBERS[start : start + 3]
        rows.append(
            {"question": f"count {' '.join(words)}", "choices": [NUMBERS[start + 3], COLORS[i % len(COLORS)], "done"]}
            | {"answer": 0}
        )
    return rows


def write_lm_eval_task(directory: Path) -> Path:
    """A harness task YAML plus its JSONL data, the data named by relative path (read from `directory`)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "counting.jsonl", counting_choice_rows())
    (directory / f"{LM_EVAL_TASK}.yaml").write_text(
        f"task: {LM_EVAL_TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        "    test: counting.jsonl\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    return directory


def _corpus() -> list[str]:
    texts = [r["text"] for r in text_rows(96)]
    texts += [f"{r['instruction']} {r['output']}" for r in alpaca_rows(96)]
    texts += ["### Instruction:\n### Response:\n### Input:\n", "user: assistant: system: echo repeat count done"]
    return texts


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _build(target: Path, *, tie_embeddings: bool, shape: dict[str, int]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=shape["positions"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    # transformers 4.57 cannot load "TokenizersBackend" (see TRAINER-NOTES item 1)
    config_path = target / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(tok_config, indent=2))


def tiny_model_dir(*, tie_embeddings: bool = False, **shape: int) -> Path:
    """Path of the cached tiny model (built on first use; safe under concurrent builders). Benchmarks and the
    GPU check ask for bigger Llamas with the same tokenizer through `shape` (keys of `SHAPE`)."""
    unknown = set(shape) - set(SHAPE)
    if unknown:
        raise ValueError(f"unknown model shape keys {sorted(unknown)}; known: {sorted(SHAPE)}")
    custom = {k: v for k, v in shape.items() if v != SHAPE[k]}
    full = SHAPE | {"intermediate": 2 * shape.get("hidden", HIDDEN)} | shape
    described: list[object] = [VOCAB_SIZE, HIDDEN] + ([sorted(full.items())] if custom else [])
    key = hashlib.sha256(json.dumps([_VERSION, _corpus(), tie_embeddings, *described]).encode()).hexdigest()
    target = cache_root() / f"tiny-llama-{key[:12]}"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _build(tmp, tie_embeddings=tie_embeddings, shape=full)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise  # someone else won the race only if the target is complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Write the tiny demo model and a learnable toy dataset.")
    parser.add_argument("--model", type=Path, required=True, help="directory to copy the tiny model into")
    parser.add_argument("--data", type=Path, required=True, help="JSONL file to write the toy text rows to")
    parser.add_argument("--rows", type=int, default=96)
    args = parser.parse_args(argv)
    shutil.copytree(tiny_model_dir(), args.model, dirs_exist_ok=True)
    write_jsonl(args.data, text_rows(args.rows))
    print(f"tiny model in {args.model}, {args.rows} rows in {args.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

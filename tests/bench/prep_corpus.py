"""A deterministic corpus of short rows for the data-prep benchmark, shaped like instruction data.

Rows of 8-20 words from a 3000-word vocabulary, with what prep exists for mixed in at stated rates:
exact repeats (case and spacing changed), near repeats (one word changed), rows with personal data
(emails, phone numbers, card numbers) and with secrets, and numbers and dates that look like PII but
are not. Nothing here is tuned to a detector: the rates are those of a scraped chat corpus.
"""

from __future__ import annotations

import random

SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "sa", "vel", "no", "dri", "pa", "quo", "shi", "ber", "at", "ex", "un")
REPEAT_RATE = 0.10
NEAR_RATE = 0.05
PII_RATE = 0.05
SECRET_RATE = 0.01
NUMBER_RATE = 0.20


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(size)]


def _pii(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return f"write to user{rng.randrange(10**6)}@example.com"
    if kind == 1:
        return f"call ({rng.randint(201, 989)}) 555-{rng.randint(100, 199):04d}"
    return "card 4111 1111 1111 1111"


def _number(rng: random.Random) -> str:
    return rng.choice(
        (
            f"in {rng.randint(1950, 2025)}",
            f"on {rng.randint(2000, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"for ${rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            f"{rng.randint(2, 500)} units",
        )
    )


def rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """`count` rows `{"text": ...}`, the same for the same seed."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    out: list[dict[str, str]] = []
    while len(out) < count:
        draw = rng.random()
        if out and draw < REPEAT_RATE:
            text = rng.choice(out)["text"]
            out.append({"text": "  " + text.upper() if rng.random() < 0.5 else text.replace(" ", "  ")})
            continue
        if out and draw < REPEAT_RATE + NEAR_RATE:
            tokens = rng.choice(out)["text"].split(" ")
            tokens[rng.randrange(len(tokens))] = rng.choice(words)
            out.append({"text": " ".join(tokens)})
            continue
        tokens = [rng.choice(words) for _ in range(rng.randint(8, 20))]
        if rng.random() < NUMBER_RATE:
            tokens.insert(rng.randrange(len(tokens)), _number(rng))
        if rng.random() < PII_RATE:
            tokens.insert(rng.randrange(len(tokens)), _pii(rng))
        if rng.random() < SECRET_RATE:
            tokens.insert(rng.randrange(len(tokens)), f'api_key = "{rng.getrandbits(128):032x}Zq"')
        out.append({"text": " ".join(tokens)})
    return out

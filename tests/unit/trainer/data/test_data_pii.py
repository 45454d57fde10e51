"""PII detection: every planted kind is found and redacted, look-alikes that fail checks are untouched."""

from __future__ import annotations

import itertools

import pytest

from kubetune_trainer.data.pii import find_pii, redact

pytestmark = pytest.mark.unit

GITHUB_TOKEN = ("ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2)[:40]

PLANTED = [
    ("email", "write to jane.doe+ml@example.co.uk today", "write to [EMAIL] today"),
    ("phone", "call (212) 555-0198 tomorrow", "call [PHONE] tomorrow"),
    ("phone", "or +44 20 7946 0958 in London", "or [PHONE] in London"),
    ("credit_card", "card 4111 1111 1111 1111 exp 12/29", "card [CREDIT_CARD] exp 12/29"),
    ("credit_card", "amex 378282246310005.", "amex [CREDIT_CARD]."),
    ("credit_card", "mc 5555-5555-5555-4444 ok", "mc [CREDIT_CARD] ok"),
    ("iban", "pay DE89 3704 0044 0532 0130 00 now", "pay [IBAN] now"),
    ("iban", "to GB82WEST12345698765432.", "to [IBAN]."),
    ("iban", "IBAN FR1420041010050500013M02606 OK", "IBAN [IBAN] OK"),
    ("ssn", "SSN 123-45-6789 on file", "SSN [SSN] on file"),
    ("ipv4", "from 203.0.113.45:8080 at noon", "from [IP_ADDRESS]:8080 at noon"),
    ("ipv4", "the gateway is 10.0.0.1.", "the gateway is [IP_ADDRESS]."),
    ("ipv6", "host 2001:db8::8a2e:370:7334 up", "host [IP_ADDRESS] up"),
    ("ipv6", "link fe80::1ff:fe23:4567:890a.", "link [IP_ADDRESS]."),
]


@pytest.mark.parametrize(("kind", "text", "expected"), PLANTED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(PLANTED)])
def test_planted_pii_is_redacted(kind: str, text: str, expected: str) -> None:
    redacted, counts = redact(text)
    assert redacted == expected
    assert counts == {kind: 1}


UNTOUCHED = [
    "order number 4111111111111112 failed Luhn",  # 16 digits, Luhn check fails
    "ref 1234 5678 9012 3456 is not a card",  # Luhn fails too
    "account DE89370400440532013001 has a bad checksum",  # IBAN mod-97 fails
    "SSN-like 000-12-3456 and 666-12-3456 are never issued",
    "version 1.2.3 and 999.10.10.10 is not an address, nor is 1.2.3.4.5",
    "C++ uses std::vector and a::b, time 12:30:45",
    "dates 2024-01-15 and 15.01.2024, pi 3.14159, 42 apples",
    "password: aaaaaaaaaaaaaaaaaaaa is low-entropy filler",
    "the sk-learn docs and ghp_short are not tokens",
    "email-like but not: user@localhost and @handle",
    "call extension 555",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_look_alikes_are_left_alone(text: str) -> None:
    redacted, counts = redact(text)
    assert redacted == text
    assert not counts


def test_many_kinds_in_one_text_do_not_overlap() -> None:
    text = "Mail bob@example.com or call +1 650-253-0000; card 4012888888881881; ip 10.1.2.3"
    matches = find_pii(text)
    assert [m.kind for m in matches] == ["email", "phone", "credit_card", "ipv4"]
    spans = [(m.start, m.end) for m in matches]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert redact(text)[0] == "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD]; ip [IP_ADDRESS]"


def test_card_number_is_not_also_a_phone_number() -> None:
    assert [m.kind for m in find_pii("4111-1111-1111-1111")] == ["credit_card"]


def test_kinds_can_be_limited_and_regions_extended() -> None:
    text = "mail a@b.io, tel 020 7946 0958"
    assert [m.kind for m in find_pii(text, kinds=["email"])] == ["email"]
    assert [m.kind for m in find_pii(text)] == ["email"]  # a UK national number is not a US one
    assert [m.kind for m in find_pii(text, phone_regions=("US", "GB"))] == ["email", "phone"]


def test_private_key_block() -> None:
    text = "cfg:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC\n-----END RSA PRIVATE KEY-----\nend"
    assert redact(text) == ("cfg:\n[SECRET]\nend", {"secret_private_key": 1})


# --- secrets: detect-secrets decides --------------------------------------------------------------

SECRETS = [
    ("secret_aws_access_key", "AWS AKIAIOSFODNN7EXAMPLE leaked", "AWS [SECRET] leaked"),
    ("secret_github_token", f"token {GITHUB_TOKEN} here", "token [SECRET] here"),
    ("secret_gitlab_token", "gitlab glpat-Ab3dEf6hIj9kLm2nOp5q ok", "gitlab [SECRET] ok"),
    ("secret_slack_token", "slack xoxb-123456789012-1234567890123-abcdefABCDEF12 ok", "slack [SECRET] ok"),
    ("secret_stripe_access_key", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok", "stripe [SECRET] ok"),
    ("secret_secret_keyword", 'api_key = "q8Zr2LmX9vT4pK7wN1bY6cH3"', 'api_key = "[SECRET]"'),
    ("secret_secret_keyword", "password = 'Tr0ub4dor&3xyz'", "password = '[SECRET]'"),
    ("secret_hugging_face_token", "HF hf_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zA7 ok", "HF [SECRET] ok"),
    ("secret_google_api_key", "maps AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY ok", "maps [SECRET] ok"),
    ("secret_llm_provider_key", "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t here", "key [SECRET] here"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)])
def test_secrets_detect_secrets_knows_are_redacted_with_their_type(kind: str, text: str, expected: str) -> None:
    assert redact(text) == (expected, {kind: 1})


def test_json_web_token_header_and_payload_are_redacted() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    redacted, counts = redact(f"Authorization: {jwt}")
    assert counts == {"secret_json_web_token": 1}
    assert "eyJ" not in redacted


def test_prefilter_candidates_are_supersets_without_lookarounds() -> None:
    from kubetune_trainer.data.pii import superset_pattern

    assert superset_pattern(r"(?<![\w.])\d+(?!\w)") == r"\d+"
    assert superset_pattern(r"(?:(?<=\W)|(?<=^))key(?=[(])") == "(?:|)key"
    assert superset_pattern(r"a\(?<=b") == r"a\(?<=b"  # escaped parenthesis: not a look-behind
    assert superset_pattern(r"glagent-[A-Za-z0-9_\-]{50,1024}(?!\w)") == r"glagent-[A-Za-z0-9_\-]{50,}"


def test_the_prefilter_never_hides_a_finding() -> None:
    from kubetune_trainer.data.pii import ALL_KINDS, _Prefilter

    prefilter = _Prefilter(ALL_KINDS)
    for kind, text, _ in PLANTED + SECRETS:
        detector = "secret" if kind.startswith("secret_") else kind
        assert detector in prefilter.candidates(text), text
    assert not prefilter.any("The parties met on Tuesday to discuss the lease.")

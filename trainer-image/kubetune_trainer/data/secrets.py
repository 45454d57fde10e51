"""Secrets in training text (API keys, tokens, private keys, passwords), found by detect-secrets.

detect-secrets' vendor plugins (AWS, GitHub, GitLab, Slack, Stripe, JWT, private keys, ...) and its
keyword plugin (`password = "..."`) decide, with its heuristic filters; `secret_plugins.py` adds three
vendors it lacks. Its high-entropy plugins are left out: on training data (code, logs) they flag every
quoted hash and UUID. Its public-IP plugin is left out because `pii.py` finds IP addresses.
Verification (calling a vendor's API with the secret) is never enabled: a secret never leaves the pod.

detect-secrets scans a line in ~75 us, which most rows do not need: `candidate_patterns()` are the
plugins' own regexes, run first by the PII prefilter (RE2, one pass per row), and only lines that
match one go through detect-secrets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["SecretScanner", "candidate_patterns", "secret_kind"]

_EXTRA_PLUGINS = ("HuggingFaceTokenDetector", "GoogleApiKeyDetector", "LlmProviderKeyDetector")
_LEFT_OUT = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"})
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def secret_kind(secret_type: str) -> str:
    """The report key of a detect-secrets type: `AWS Access Key` -> `secret_aws_access_key`."""
    return "secret_" + _NOT_WORD.sub("_", secret_type.lower()).strip("_")


@functools.cache
def _configure() -> tuple[Any, ...]:
    """Point detect-secrets' process-wide settings at our plugins (once per process); returns the plugins."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import configure_settings_from_baseline, get_plugins

    extra = Path(__file__).with_name("secret_plugins.py").resolve()
    classes: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
    names = sorted(plugin.__name__ for plugin in classes)
    plugins: list[dict[str, str]] = [{"name": n} for n in names if n not in _LEFT_OUT]
    plugins += [{"name": n, "path": f"file://{extra}"} for n in _EXTRA_PLUGINS]
    configure_settings_from_baseline({"plugins_used": plugins})
    get_mapping_from_secret_type_to_class.cache_clear()  # it was cached before the file plugins were named
    return tuple(get_plugins())


def candidate_patterns() -> list[tuple[str, int]]:
    """(pattern, re flags) that every secret a plugin can report matches: the prefilter's secret entries."""
    from detect_secrets.plugins import keyword

    patterns: list[tuple[str, int]] = [(keyword.DENYLIST_REGEX, re.IGNORECASE)]
    for plugin in _configure():
        patterns += [(p.pattern, p.flags) for p in getattr(plugin, "denylist", ())]
    return patterns


class SecretScanner:
    """Finds secrets line by line with detect-secrets and returns spans to redact (kind, start, end)."""

    def __init__(self) -> None:
        self._plugins = {plugin.secret_type: plugin for plugin in _configure()}
        self._candidate = re.compile("|".join(f"(?:{_inline(p, f)})" for p, f in candidate_patterns()))

    def find(self, text: str) -> Iterator[tuple[str, int, int]]:
        from detect_secrets.core.scan import scan_line

        offset = 0
        for line in text.splitlines(keepends=True):
            if self._candidate.search(line):
                for secret in scan_line(line.rstrip("\r\n")):
                    for start, end in self._spans(line, secret.type, secret.secret_value or ""):
                        yield (secret_kind(secret.type), *self._extend(text, secret.type, offset + start, offset + end))
            offset += len(line)

    def _spans(self, line: str, secret_type: str, value: str) -> Iterator[tuple[int, int]]:
        """Where the secret is: the plugin's whole match (its reported value may be one group of it)."""
        found = False
        for pattern in getattr(self._plugins.get(secret_type), "denylist", ()):
            for match in pattern.finditer(line):
                if value and value in match.group():
                    found = True
                    yield match.span()
        if not found and value:
            start = line.find(value)
            while start >= 0:
                yield start, start + len(value)
                start = line.find(value, start + len(value))

    @staticmethod
    def _extend(text: str, secret_type: str, start: int, end: int) -> tuple[int, int]:
        """A private key is reported by its `BEGIN ... PRIVATE KEY` words; the key runs to the END line."""
        if secret_type != "Private Key":
            return start, end
        if text[max(0, start - 5) : start] == "-----":
            start -= 5
        closing = _PRIVATE_KEY_END.search(text, end)
        return start, closing.end() if closing else end


def _inline(pattern: str, flags: int) -> str:
    """A pattern with its flags scoped inline, so patterns with different flags share one regex."""
    letters = ("i" if flags & re.IGNORECASE else "") + ("x" if flags & re.VERBOSE else "")
    return f"(?{letters}:{pattern})" if letters else pattern

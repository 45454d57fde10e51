"""detect-secrets plugins for keys that detect-secrets 1.5 does not know, loaded by file path (`secrets.py`).

Each is a `RegexBasedDetector` like detect-secrets' own, so its heuristics filters apply unchanged. Kept
to vendors whose keys show up in chat logs and code that fine-tuning data is made from.
"""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face user and organisation access tokens."""

    secret_type = "Hugging Face Token"
    denylist = (re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{30,}\b"),)


class GoogleApiKeyDetector(RegexBasedDetector):
    """Google Cloud / Maps / Gemini API keys."""

    secret_type = "Google API Key"
    denylist = (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),)


class LlmProviderKeyDetector(RegexBasedDetector):
    """Anthropic and current OpenAI project/service keys (detect-secrets only knows legacy OpenAI keys)."""

    secret_type = "LLM Provider Key"
    denylist = (re.compile(r"\bsk-(?:ant-(?:api|admin)\d{2}-|proj-|svcacct-|admin-)[A-Za-z0-9_-]{20,}"),)

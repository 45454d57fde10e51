"""The body of a server-side apply request, shared by the operator and the trainer.

The API server takes an apply patch only as YAML. JSON would be YAML too, but `json.dumps` writes characters
outside the BMP as surrogate-pair escapes, which the API server's YAML decoder rejects: an emoji in a spec (or
in a trainer's status string) would make every apply of that object fail. YAML's own escapes (\\U0001F600)
carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml


class _ApplyDumper(yaml.CSafeDumper):
    """Every string double-quoted: YAML 1.1 resolvers differ on plain scalars ("1e3" is a float to the API
    server's decoder and a string to PyYAML), quoted scalars are strings to both."""


_ApplyDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
)


def apply_body(manifest: Mapping[str, Any]) -> str:
    """`manifest` as the YAML document of an `application/apply-patch+yaml` request."""
    return yaml.dump(dict(manifest), Dumper=_ApplyDumper, allow_unicode=False, sort_keys=False, width=2**30)

"""Kubernetes `$(VAR)` references in a container's command, args and env values, as the kubelet expands them.

The operator renders `torchrun --node-rank=$(NODE_RANK) --master-addr=$(MASTER_ADDR)`: the kubelet, not a
shell, substitutes those from the container's environment. Same rules as Kubernetes
(`third_party/forked/golang/expansion`): `$(NAME)` becomes the variable's value when it is defined and
stays verbatim otherwise, `$$` is an escaped `$`, anything else is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append("$")
            i += 1
    return "".join(out)

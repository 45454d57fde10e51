"""What GitOps tools make of an object: kstatus' verdict (the real library, through hack/kstatus) and the
Argo CD health Lua shipped in the chart, run the way Argo CD runs it.

Argo CD (util/lua/lua.go) runs health checks in gopher-lua, a Lua 5.1, with only the base, table,
package and a reduced os library opened, the object as the global `obj`, and keeps the returned
table's `status` (one of Healthy, Progressing, Degraded, Suspended, Missing, Unknown) and `message`.
lupa's Lua 5.1 with the other libraries removed (and strings without methods) is the same contract.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lupa.lua51 import LuaRuntime

from kubetune_dev.controlplane.paths import REPO_ROOT, find_kstatus

HEALTH_LUA = REPO_ROOT / "charts" / "kubetune" / "files" / "argocd" / "health.lua"
ARGOCD_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
# What Argo CD leaves open: base, table, package and a safe os (time and date only).
SANDBOX = """
getmetatable("").__index = nil
local safe_os = {time = os.time, date = os.date, clock = os.clock}
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = safe_os
"""


def kstatus(objects: list[dict[str, Any]], binary: Path | None = None) -> list[dict[str, str]]:
    """kstatus' verdict ({kind, name, status, message}) for each object, in order, from one process."""
    stream = "\n".join(json.dumps(o) for o in objects)
    done = subprocess.run(
        [str(binary or find_kstatus())], input=stream, capture_output=True, text=True, check=True, timeout=60
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def argocd_health(obj: dict[str, Any], script: str | None = None) -> dict[str, str]:
    """{status, message} as Argo CD's resource.customizations.health.<group>_<kind> would report them."""
    lua = LuaRuntime(unpack_returned_tuples=False)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    returned = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    health = dict(returned.items()) if returned is not None else {}
    status = str(health.get("status", ""))
    assert status in ARGOCD_STATUSES, f"Argo CD turns {status!r} into Unknown: 'Lua returned an invalid health status'"
    return {"status": status, "message": str(health.get("message") or "")}

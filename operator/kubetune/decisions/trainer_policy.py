"""Whether runs may share the namespace's trainer identity: only while the API server confines it.

The shared `kubetune-trainer` Role may patch the status of any run in its namespace; the chart's
ValidatingAdmissionPolicy is what narrows a token to its own pod's run. Without that policy in force (not installed,
not bound, or bound to warn only) sharing would silently widen what a trainer may write, so the operator keeps
per-run identities instead.
"""

from __future__ import annotations

from kubetune.decisions.observed import Obj

ADMISSION_API = "/apis/admissionregistration.k8s.io/v1"


def policy_url(name: str) -> str:
    return f"{ADMISSION_API}/validatingadmissionpolicies/{name}"


def binding_url(name: str) -> str:
    return f"{ADMISSION_API}/validatingadmissionpolicybindings/{name}"


def policy_problem(name: str, policy: Obj | None, binding: Obj | None) -> str | None:
    """Why the policy named `name` does not confine trainer tokens (None: it does). Its binding has the same name,
    as the chart renders them."""
    if policy is None:
        return f"ValidatingAdmissionPolicy {name} not found"
    if binding is None:
        return f"ValidatingAdmissionPolicyBinding {name} not found"
    spec = binding.get("spec") or {}
    if spec.get("policyName") != name:
        return f"ValidatingAdmissionPolicyBinding {name} binds {spec.get('policyName')!r}, not {name}"
    if "Deny" not in (spec.get("validationActions") or []):
        return (
            f"ValidatingAdmissionPolicyBinding {name} does not deny (validationActions {spec.get('validationActions')})"
        )
    return None

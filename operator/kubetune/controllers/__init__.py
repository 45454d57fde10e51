"""One level-based reconcile per kind: read through `k8s`, decide with `decisions` and `render`, write back.

Controllers take the `KubeClient` protocol, so their flow is unit-tested against an in-memory fake
and integration-tested against a real API server with the same code.
"""

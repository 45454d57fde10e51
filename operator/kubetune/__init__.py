"""kubetune: the operator side (API models, CRD generation, rendering, reconciliation, CLI)."""

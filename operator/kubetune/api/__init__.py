"""kubetune API: typed models of the CRDs, their CEL rules, and CRD generation."""

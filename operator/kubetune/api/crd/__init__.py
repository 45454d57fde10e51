"""CRDs generated from the pydantic models; `python -m kubetune.api.crd write|check`."""

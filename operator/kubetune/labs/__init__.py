"""The code labs: five classic fine-tuning experiments as manifests, a local runner and reports."""

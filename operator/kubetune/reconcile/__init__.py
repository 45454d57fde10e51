"""Pure decisions: what was observed (plus the time) in, status and actions out."""

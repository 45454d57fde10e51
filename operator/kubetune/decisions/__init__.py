"""Pure decisions: what was observed (plus the time) in, status, conditions and the side effects to take out."""

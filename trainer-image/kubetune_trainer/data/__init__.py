"""Dataset loading, format normalisation and prep (dedup, PII, licenses, length) for the trainer."""

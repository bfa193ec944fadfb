"""Training (torch): data, losses, bi-level dual-task trainer, evaluation, CLI."""

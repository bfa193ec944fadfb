"""Training (torch): data, losses, four training schemes behind one trainer, evaluation, CLI."""

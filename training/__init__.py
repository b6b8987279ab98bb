"""Training, evaluation, data loading, losses and metrics for AGQG (see docs/)."""

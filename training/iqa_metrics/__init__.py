"""The `iqa_metrics` evaluate module (load it with `training.metrics.load_metric()`)."""

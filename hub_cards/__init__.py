"""Hub publishing for AGQG models: model and dataset cards, and `push` of a complete remote-code folder."""

from .cards import (
    CardError,
    check_model_card,
    load_eval_results,
    model_card_data,
    render_dataset_card,
    render_model_card,
    write_model_card,
)

__all__ = [
    "CardError",
    "check_model_card",
    "load_eval_results",
    "model_card_data",
    "render_dataset_card",
    "render_model_card",
    "write_model_card",
]

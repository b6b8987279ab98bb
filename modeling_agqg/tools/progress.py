"""Progress bars: one reading of `TQDM_DISABLE` and one switch for the libraries' own bars, shared by the scoring
tools and the training scripts (a light module: it imports transformers and datasets only when it switches them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["library_progress_bars", "progress_disabled_by_env"]

_FALSE_WORDS = ("", "0", "false", "no", "off")


def progress_disabled_by_env() -> bool:
    """Whether the environment's `TQDM_DISABLE` asks for no progress bars (any value but empty, 0, false, no or
    off, case-insensitive). tqdm itself reads it only for bars that do not pass `disable=` and only when it is
    imported, so our bars read it when they are made."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in _FALSE_WORDS


@contextlib.contextmanager
def library_progress_bars(enabled: bool, *, datasets: bool = False) -> Iterator[None]:
    """With `enabled` False, turns transformers' own bars ("Loading weights", downloads) off for the block, and
    with `datasets` True also the datasets library's (caching, saving), then restores what was on before, so a
    caller from Python finds the libraries as it left them. With `enabled` True nothing changes."""
    if enabled:
        yield
        return
    from transformers.utils import logging as transformers_logging

    switches = [
        (
            transformers_logging.is_progress_bar_enabled,
            transformers_logging.disable_progress_bar,
            transformers_logging.enable_progress_bar,
        )
    ]
    if datasets:
        import datasets as datasets_library

        switches.append(
            (
                datasets_library.is_progress_bar_enabled,
                datasets_library.disable_progress_bars,
                datasets_library.enable_progress_bars,
            )
        )
    turned_off = []
    for is_on, turn_off, turn_on in switches:
        if is_on():
            turn_off()
            turned_off.append(turn_on)
    try:
        yield
    finally:
        for turn_on in turned_off:
            turn_on()

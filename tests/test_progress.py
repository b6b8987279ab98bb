"""`modeling_agqg.tools.progress`: one reading of TQDM_DISABLE and one switch for the libraries' bars."""

from __future__ import annotations

import datasets
import pytest
from transformers.utils import logging as transformers_logging

from modeling_agqg.tools.progress import library_progress_bars, progress_disabled_by_env
from training.options import progress_bars_disabled


@pytest.mark.parametrize(
    ("value", "disabled"),
    [(None, False), ("", False), ("0", False), ("false", False), ("No", False), (" off ", False),
     ("1", True), ("true", True), ("YES", True), ("on", True), ("y", True)],
)  # fmt: skip
def test_tqdm_disable_is_read_one_way_by_scoring_and_training(
    value: str | None, disabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", value)
    assert progress_disabled_by_env() is disabled
    assert progress_bars_disabled(False) is disabled
    assert progress_bars_disabled(True) is True


@pytest.fixture
def bars_on():
    """Both libraries' bars on before the test, and whatever they were restored after it."""
    was = (transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled())
    transformers_logging.enable_progress_bar()
    datasets.enable_progress_bars()
    yield
    (transformers_logging.enable_progress_bar if was[0] else transformers_logging.disable_progress_bar)()
    (datasets.enable_progress_bars if was[1] else datasets.disable_progress_bars)()


def _states() -> tuple[bool, bool]:
    return transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()


def test_library_bars_are_off_inside_and_restored_after(bars_on: None) -> None:
    with library_progress_bars(False, datasets=True):
        assert _states() == (False, False)
    assert _states() == (True, True)
    with library_progress_bars(False):  # transformers only, as the scoring tools ask
        assert _states() == (False, True)
    assert _states() == (True, True)
    with library_progress_bars(True, datasets=True):
        assert _states() == (True, True)
    assert _states() == (True, True)


def test_library_bars_are_restored_after_an_error_and_not_turned_on_if_they_were_off(bars_on: None) -> None:
    with pytest.raises(RuntimeError, match="inside"), library_progress_bars(False, datasets=True):
        raise RuntimeError("inside")
    assert _states() == (True, True)
    datasets.disable_progress_bars()
    with library_progress_bars(False, datasets=True):
        assert _states() == (False, False)
    assert _states() == (True, False)  # datasets' bars were off before: they stay off

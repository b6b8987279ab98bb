"""Shared fixtures: tiny random CLIP + AGQG models built in code, an isolated Hugging Face cache,
and the real-format data fixtures in ../shared/data (tests using them skip when it is absent)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AGQG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


# No test reads or writes the user's Hugging Face cache, and none reaches the Hub. Set when pytest imports this file,
# before any test module imports huggingface_hub (which reads these variables once, at import).
_HF_HOME = tempfile.mkdtemp(prefix="agqg-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "1")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


@pytest.fixture(autouse=True, scope="session")
def _isolated_hf_home() -> Iterator[None]:
    """Removes the temporary Hugging Face home at the end of the session."""
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-format data fixtures not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    from modeling_agqg.tools.offline import clip_character_tokenizer

    return clip_character_tokenizer()


def _backbone_params() -> list:
    """Every backbone family, timm style; SigLIP 2 skips where the installed transformers lacks it (< 4.49)."""
    import transformers

    has_siglip2 = hasattr(transformers, "Siglip2Model")
    reason = f"transformers {transformers.__version__} has no Siglip2Model"
    siglip2 = pytest.param("siglip2", marks=pytest.mark.skipif(not has_siglip2, reason=reason))
    return ["clip", "siglip", siglip2, "align"]


BACKBONES = _backbone_params()


def make_tiny_model(tokenizer, backbone: str = "clip", **config_overrides):
    """A tiny randomly initialised AGQG model (32x32 input, seed 0, eval mode) around a tiny CLIP, SigLIP,
    SigLIP 2 or ALIGN: `modeling_agqg.tools.offline`'s one tiny-model builder, which training and the benchmarks
    use too."""
    from modeling_agqg.tools.offline import tiny_agqg_model

    return tiny_agqg_model(backbone=backbone, tokenizer=tokenizer, seed=0, **config_overrides)


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_model(tokenizer)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 32-pixel synthetic dataset shared by the training subprocesses (they load it from disk)."""
    from training.synthetic import build_synthetic_dataset

    folder = tmp_path_factory.mktemp("synthetic32")
    build_synthetic_dataset(folder, image_size=32, seed=0)
    return folder

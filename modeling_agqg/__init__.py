"""AGQG: psychometric (Graded Response Model) grading for CLIP-based AI-generated image quality assessment.

The package has two parts:

* **Remote code** — the flat `*_agqg.py` files in this folder (`configuration_agqg`, `modeling_agqg`,
  `prompt_learning_agqg`, `views_agqg`, `pipeline_agqg`). They import only torch, transformers and each
  other, and `save_pretrained` copies them next to the weights, so a saved folder or Hub repository works
  through `trust_remote_code=True` without this package.
* **The local library** — `modeling_agqg.tools`: scoring at scale (`score`, `agqg score`), `agqg explain`, the
  command line, and the offline tiny-CLIP builders. It never travels with the weights.

Every public name below is imported on first use, so `import modeling_agqg` (and `agqg --help`) stays fast;
the first access to a model, config or pipeline name also registers them with `AutoConfig`, `AutoModel`
and the `image-quality` pipeline task.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "AGQGConfig": "configuration_agqg",
    "AGQGForImageQualityAssessment": "modeling_agqg",
    "AGQGHead": "modeling_agqg",
    "AGQGOutput": "modeling_agqg",
    "expected_grade": "modeling_agqg",
    "grade_spread": "modeling_agqg",
    "grade_to_score": "modeling_agqg",
    "grm_grade_probs": "modeling_agqg",
    "min_scaled_gap_for_unimodality": "modeling_agqg",
    "ImageLoadError": "views_agqg",
    "load_image_file": "views_agqg",
    "rgb_pixel_values": "views_agqg",
    "ImageQualityPipeline": "pipeline_agqg",
    "score": "tools.scoring",
}

__all__ = sorted(_EXPORTS)

_registered = False


def _register() -> None:
    """Registers the config, the model and the `image-quality` task with transformers' Auto classes (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    from transformers import AutoConfig, AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    from .configuration_agqg import AGQGConfig
    from .modeling_agqg import AGQGForImageQualityAssessment
    from .pipeline_agqg import ImageQualityPipeline

    AutoConfig.register(AGQGConfig.model_type, AGQGConfig, exist_ok=True)
    AutoModel.register(AGQGConfig, AGQGForImageQualityAssessment, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(
        "image-quality", pipeline_class=ImageQualityPipeline, pt_model=AutoModel, type="image"
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if _EXPORTS[name] != "tools.scoring":
        _register()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""AGQG: psychometric (Graded Response Model) grading for CLIP-based AI-generated image quality assessment."""

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_agqg import AGQGConfig
from .modeling_agqg import (
    AGQGForImageQualityAssessment,
    AGQGHead,
    AGQGOutput,
    expected_grade,
    grade_to_score,
    grm_grade_probs,
    min_scaled_gap_for_unimodality,
)
from .pipeline_agqg import ImageLoadError, ImageQualityPipeline, load_image_file, rgb_pixel_values
from .scoring import score

__all__ = [
    "AGQGConfig",
    "AGQGForImageQualityAssessment",
    "AGQGHead",
    "AGQGOutput",
    "ImageLoadError",
    "ImageQualityPipeline",
    "expected_grade",
    "grade_to_score",
    "grm_grade_probs",
    "load_image_file",
    "min_scaled_gap_for_unimodality",
    "rgb_pixel_values",
    "score",
]

__version__ = "0.1.0"

AutoConfig.register(AGQGConfig.model_type, AGQGConfig, exist_ok=True)
AutoModel.register(AGQGConfig, AGQGForImageQualityAssessment, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    "image-quality", pipeline_class=ImageQualityPipeline, pt_model=AutoModel, type="image"
)

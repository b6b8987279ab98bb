"""The `image-quality` pipeline of AGQG models.

`pipeline("image-quality", model=folder_or_repo, trust_remote_code=True)` loads this file from the
model's `custom_pipelines`. A remote-code config is not in transformers' processor mappings, so the
pipeline takes its image processor and tokenizer from the model (which loads them from the same
folder) instead of relying on `pipeline()` to find them.

This file is Hub remote code: it imports only the standard library, torch, transformers and its
sibling files.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from .views_agqg import ImageLoadError, PixelSpec, ViewProtocol, load_view_image, make_views


class ImageQualityPipeline(Pipeline):
    """Scores images with an AGQG model.

    Inputs: a file path or PIL image, a `{"image": ..., "prompt": ...}` dict (the generation prompt
    turns on alignment-aware grading), or a list of these. Use `batch_size=N` to batch.

    Each image is cut into the model's views (`config.view_protocol`: `resize`, `crops` or `ipce`, see
    `views_agqg.ViewProtocol`) by `views_agqg.make_views`, the same function training, evaluation, `score()` and
    `agqg score` use, and the model combines them. `views="crops:15"` (or any protocol spec) overrides the
    model's protocol for one call.

    Output per image: `{"score": float, "grade": str, "grade_probs": {grade_name: float}, "ability": float}`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("task", "image-quality")
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = getattr(self.model, "image_processor", None) or self.model.default_image_processor()
        if self.tokenizer is None:
            self.tokenizer = getattr(self.model, "tokenizer", None)
        self.pixel_spec = PixelSpec.from_image_processor(self.image_processor)

    def _sanitize_parameters(self, views: Any = None, **unknown: Any) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(
                f"the image-quality pipeline got unexpected argument(s) {sorted(unknown)}; it takes `views` "
                "(a view protocol spec such as 'crops:15'), `batch_size` and `num_workers`"
            )
        if views is None:
            return {}, {}, {}
        protocol = self.model.view_protocol(views)  # checked here, once per call
        return {"protocol": protocol}, {"protocol": protocol}, {}

    def preprocess(self, inputs: Any, protocol: ViewProtocol | None = None) -> dict[str, torch.Tensor]:
        prompt = None
        if isinstance(inputs, dict):
            if "image" not in inputs:
                raise ImageLoadError(f"input dict has no 'image' key (keys: {sorted(inputs)})")
            inputs, prompt = inputs["image"], inputs.get("prompt")
        protocol = protocol or self.model.view_protocol()
        image = load_view_image(inputs, protocol, self.pixel_spec)
        pixel_values = make_views(image, protocol, self.pixel_spec, processor=self.image_processor)
        model_inputs = {"pixel_values": pixel_values}
        if prompt is not None:
            model_inputs.update(self.model.tokenize_alignment_prompts(self.tokenizer, [str(prompt)]))
        return model_inputs

    def _forward(self, model_inputs: dict[str, torch.Tensor], protocol: ViewProtocol | None = None) -> dict:
        protocol = protocol or self.model.view_protocol()
        output = self.model(**model_inputs, num_views=protocol.num_views(), view_aggregation=protocol.aggregation)
        return {"score": output.score, "grade_probs": output.grade_probs, "ability": output.ability}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        names = self.model.config.grade_names
        probs = model_outputs["grade_probs"].reshape(-1).float().tolist()
        return {
            "score": float(model_outputs["score"].reshape(-1)[0]),
            "grade": names[max(range(len(probs)), key=probs.__getitem__)],
            "grade_probs": dict(zip(names, probs, strict=True)),
            "ability": float(model_outputs["ability"].reshape(-1)[0]),
        }

"""Configuration of the AGQG image-quality scorer (dual-encoder backbone + graded-response head).

This file is Hub remote code: it imports only the standard library, torch, transformers
and its sibling files, and it never touches the network.
"""

from __future__ import annotations

import os
import re
from typing import Any

from transformers import PretrainedConfig

from .backbones_agqg import build_backbone_config
from .views_agqg import ViewProtocol

DEFAULT_GRADE_NAMES = ("bad", "poor", "fair", "good", "perfect")
DEFAULT_PROMPT_TEMPLATES = ("a photo with {grade} quality.",)
DEFAULT_ALIGNMENT_GRADE_NAMES = ("badly", "poorly", "fairly", "well", "perfectly")
DEFAULT_ALIGNMENT_TEMPLATE = "a photo that {grade} matches '{prompt}'"

DEFAULT_MULTITASK_TEMPLATE = "a photo of a {scene} with {distortion} artifacts, which is of {grade} quality."
DEFAULT_CONTEXT_PLACEHOLDER = "X"

GRADINGS = ("agqg", "softmax")
PROMPT_LEARNING_METHODS = ("coop", "maple")
LOSS_TYPES = ("l1", "mse")
ABILITY_SOURCES = ("similarities", "embedding", "both")

# What a saved config records instead of a local folder in `_name_or_path`: the folder's base name behind this marker
# ("<local path>/clip-vit-b16"), so a published config says a local checkpoint was used without saying where it lived.
LOCAL_PATH_MARKER = "<local path>"
# A Hub repository id: "name" (legacy canonical models) or "owner/name".
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def is_hub_id(name_or_path: str) -> bool:
    """Whether `name_or_path` is a Hub repository id ("name" or "owner/name") and not a path on this machine."""
    return bool(_HUB_ID.match(name_or_path)) and ".." not in name_or_path and not os.path.exists(name_or_path)


def redacted_local_path(path: str) -> str:
    """`"<local path>/NAME"` for a local path (NAME its base name); just the marker for the home folder, a folder
    above it or a root, whose base name would only say who the user is. Already redacted values stay as they are."""
    if path.startswith(LOCAL_PATH_MARKER):
        return path
    without_scheme = path[len("file://") :] if path.startswith("file://") else path
    name = re.split(r"[\\/]", without_scheme.rstrip("\\/"))[-1]
    home = os.path.realpath(os.path.expanduser("~"))
    resolved = os.path.realpath(os.path.expanduser(without_scheme)) if without_scheme else ""
    if not name or name == "~" or not resolved or home == resolved or home.startswith(resolved.rstrip(os.sep) + os.sep):
        return LOCAL_PATH_MARKER
    return f"{LOCAL_PATH_MARKER}/{name}"


def public_name_or_path(name_or_path: str) -> str:
    """The value a saved config records for `_name_or_path`: a Hub id as it is, a local path redacted (see
    `redacted_local_path`), the empty default as it is."""
    if not name_or_path or is_hub_id(name_or_path):
        return name_or_path
    return redacted_local_path(name_or_path)


class AGQGConfig(PretrainedConfig):
    r"""Configuration of [`AGQGForImageQualityAssessment`].

    Args:
        backbone_config: The backbone's configuration: a `CLIPConfig`, `SiglipConfig` or `Siglip2Config`, or its
            dict, whose `model_type` records the family (a dict without one is a CLIP config). Defaults to CLIP's
            own defaults (ViT-B/32 shapes). Saved as `backbone_config`.
        num_grades: K, the number of ordered quality grades. Must equal `len(grade_names)`.
        grade_names: The grade words, worst first, substituted into the prompt templates.
        prompt_templates: Templates with a `{grade}` field. The text features of one grade are the
            normalised mean of its templates' normalised features (CLIP's prompt ensembling).
        alignment_grade_names: Grade words (adverbs) for generation-prompt conditioning, worst first.
        alignment_template: Template with `{grade}` and `{prompt}` fields, used when a generation
            prompt is given for an image (IPCE-style text-image alignment grading).
        grading: `"agqg"` for the graded-response head, `"softmax"` for the baseline aggregation
            (softmax over the K similarities with the backbone's logit scale, then the expected grade).
        score_range: `(min, max)` of the dataset's MOS scale; grade 1 maps to min and grade K to max.
        ability_source: What the ability branch reads: the K grade similarities, the image embedding,
            or both.
        ability_hidden_size: Width of the ability branch's hidden layer.
        difficulty_hidden_size: Width of the difficulty branch's hidden layer.
        discrimination_init: Initial GRM discrimination a (on the centred expected-grade scale).
        min_scaled_gap: Lower bound on a*d, the scaled threshold spacing. `None` selects the smallest value
            that guarantees a unimodal grade distribution for every ability (0 for K=2, ln 4 for K=3,
            ln 3 for K>=4; see the head's docstring). A smaller explicit value gives up that guarantee.
        loss_type: Loss of `forward(labels=...)` on the score: `"l1"` or `"mse"`.
        head_init_std: Standard deviation of the head's output-layer weights at initialisation.
        grade_prompt_sets: Explicit prompts per grade instead of templates x grade names: K lists of equally
            many prompts, worst grade first, each list averaged like templates (e.g. CLIP-IQA's antonym pair
            `[["Bad photo."], ["Good photo."]]`, or several antonym pairs at once). `None`: templates.
        multitask_scenes: LIQE-style multitask prompts: scene words. Together with `multitask_distortions`
            the grade prompts become `multitask_template` over every (scene, distortion) pair; each grade's
            similarity is then the log-sum-exp over its scene x distortion prompts (see the model), so the
            softmax grading is the quality marginal of the joint softmax. `None`: no multitask prompts.
        multitask_distortions: LIQE-style multitask prompts: distortion words (both lists or neither).
        multitask_template: Template with `{scene}`, `{distortion}` and `{grade}` fields.
        prompt_learning: Learnable prompts: `None` (fixed text prompts), `"coop"` (CoOp: learnable context
            tokens in front of every grade prompt, text side only) or `"maple"` (MaPLe-style deep multi-modal
            prompts: learnable text prompts in the first `prompt_depth` text layers and vision prompts in the
            first `prompt_depth` vision layers, each a learned linear projection of the text prompts).
        num_context_tokens: M, the number of learnable context tokens (and MaPLe vision prompt tokens).
        prompt_depth: J, the number of layers of each tower that receive fresh prompts (MaPLe; CoOp is J = 1).
        context_init_std: Standard deviation of the learnable prompts at initialisation.
        context_placeholder: The word whose tokens stand for the context tokens in the tokenised prompts; it
            must tokenise to exactly one token.
        view_protocol: How an image becomes the model's views and how their grades combine (`ViewProtocol`: a
            dict such as `{"scheme": "crops", "num_crops": 15, ...}`, a short spec such as `"ipce"` or
            `"crops:15"`, or None for `resize`). Training records the protocol it trained and evaluated with; the
            pipeline, `score()` and `agqg score` apply it unless the caller overrides it.
        context_offset: Position of the first learnable context token in the tokenised grade prompts (1 after
            CLIP's start token; 0 for tokenizers without one). `set_grade_prompts` records it from the tokenizer.
        clip_config: The backbone config under its old name: folders saved before other backbones were supported
            store the CLIP config here. Read into `backbone_config`; give one or the other.
    """

    model_type = "agqg"

    def __init__(
        self,
        backbone_config: dict[str, Any] | PretrainedConfig | None = None,
        num_grades: int | None = None,
        grade_names: list[str] | tuple[str, ...] | None = None,
        prompt_templates: list[str] | tuple[str, ...] | None = None,
        alignment_grade_names: list[str] | tuple[str, ...] | None = None,
        alignment_template: str = DEFAULT_ALIGNMENT_TEMPLATE,
        grading: str = "agqg",
        score_range: list[float] | tuple[float, float] = (1.0, 5.0),
        ability_source: str = "both",
        ability_hidden_size: int = 256,
        difficulty_hidden_size: int = 128,
        discrimination_init: float = 4.0,
        min_scaled_gap: float | None = None,
        loss_type: str = "l1",
        head_init_std: float = 0.01,
        grade_prompt_sets: list[list[str]] | None = None,
        multitask_scenes: list[str] | tuple[str, ...] | None = None,
        multitask_distortions: list[str] | tuple[str, ...] | None = None,
        multitask_template: str = DEFAULT_MULTITASK_TEMPLATE,
        prompt_learning: str | None = None,
        num_context_tokens: int = 4,
        prompt_depth: int = 1,
        context_init_std: float = 0.02,
        context_placeholder: str = DEFAULT_CONTEXT_PLACEHOLDER,
        view_protocol: dict[str, Any] | str | ViewProtocol | None = None,
        context_offset: int = 1,
        clip_config: dict[str, Any] | PretrainedConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if clip_config is not None:
            if backbone_config is not None:
                raise ValueError("give backbone_config or clip_config (its old name), not both")
            backbone_config = clip_config
        if isinstance(backbone_config, PretrainedConfig):
            backbone_config = backbone_config.to_dict()
        self.backbone_config = build_backbone_config(
            _without_dtype(backbone_config) if backbone_config is not None else None
        )

        grade_names = list(grade_names) if grade_names is not None else None
        if grade_names is None:
            grade_names = list(DEFAULT_GRADE_NAMES) if num_grades in (None, 5) else None
        if grade_names is None:
            raise ValueError(f"num_grades={num_grades} needs explicit grade_names (the defaults have 5)")
        if num_grades is None:
            num_grades = len(grade_names)
        if num_grades != len(grade_names) or num_grades < 2:
            raise ValueError(f"num_grades={num_grades} must be >= 2 and equal len(grade_names)={len(grade_names)}")
        self.num_grades = int(num_grades)
        self.grade_names = grade_names

        self.prompt_templates = list(prompt_templates or DEFAULT_PROMPT_TEMPLATES)
        for template in self.prompt_templates:
            if "{grade}" not in template:
                raise ValueError(f"prompt template {template!r} has no '{{grade}}' field")
        self.alignment_grade_names = list(alignment_grade_names or DEFAULT_ALIGNMENT_GRADE_NAMES)
        if len(self.alignment_grade_names) != self.num_grades:
            if alignment_grade_names is None:
                # Default adverbs only fit K=5; reuse the grade names for other K.
                self.alignment_grade_names = list(self.grade_names)
            else:
                raise ValueError(
                    f"alignment_grade_names has {len(self.alignment_grade_names)} entries, expected {self.num_grades}"
                )
        if "{grade}" not in alignment_template or "{prompt}" not in alignment_template:
            raise ValueError(f"alignment_template {alignment_template!r} needs '{{grade}}' and '{{prompt}}' fields")
        self.alignment_template = alignment_template

        if grading not in GRADINGS:
            raise ValueError(f"grading={grading!r}; expected one of {GRADINGS}")
        self.grading = grading
        score_range = [float(v) for v in score_range]
        if len(score_range) != 2 or not score_range[0] < score_range[1]:
            raise ValueError(f"score_range={score_range} must be (min, max) with min < max")
        self.score_range = score_range
        if ability_source not in ABILITY_SOURCES:
            raise ValueError(f"ability_source={ability_source!r}; expected one of {ABILITY_SOURCES}")
        self.ability_source = ability_source
        self.ability_hidden_size = int(ability_hidden_size)
        self.difficulty_hidden_size = int(difficulty_hidden_size)
        if discrimination_init <= 0:
            raise ValueError(f"discrimination_init={discrimination_init} must be > 0")
        self.discrimination_init = float(discrimination_init)
        if min_scaled_gap is not None and min_scaled_gap < 0:
            raise ValueError(f"min_scaled_gap={min_scaled_gap} must be >= 0")
        self.min_scaled_gap = min_scaled_gap
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={loss_type!r}; expected one of {LOSS_TYPES}")
        self.loss_type = loss_type
        self.head_init_std = float(head_init_std)
        self._set_prompt_options(
            grade_prompt_sets,
            multitask_scenes,
            multitask_distortions,
            multitask_template,
            prompt_learning,
            num_context_tokens,
            prompt_depth,
            context_init_std,
            context_placeholder,
        )
        self.view_protocol = ViewProtocol.parse(view_protocol or "resize").to_dict()
        if int(context_offset) < 0:
            raise ValueError(f"context_offset={context_offset} must be >= 0")
        self.context_offset = int(context_offset)
        super().__init__(**kwargs)

    @property
    def clip_config(self) -> PretrainedConfig:
        """The backbone config under its old name (`backbone_config`), for code written when AGQG wrapped only
        CLIP. For SigLIP backbones it is the `SiglipConfig`/`Siglip2Config`."""
        return self.backbone_config

    @clip_config.setter
    def clip_config(self, value: dict[str, Any] | PretrainedConfig) -> None:
        self.backbone_config = build_backbone_config(value)

    @property
    def backbone_type(self) -> str:
        """The backbone family: `"clip"`, `"siglip"` or `"siglip2"`."""
        return str(self.backbone_config.model_type)

    def _set_prompt_options(
        self,
        grade_prompt_sets: list[list[str]] | None,
        multitask_scenes: list[str] | tuple[str, ...] | None,
        multitask_distortions: list[str] | tuple[str, ...] | None,
        multitask_template: str,
        prompt_learning: str | None,
        num_context_tokens: int,
        prompt_depth: int,
        context_init_std: float,
        context_placeholder: str,
    ) -> None:
        """Validates and stores the host-framework options (prompt sets, multitask prompts, prompt learning)."""
        if grade_prompt_sets is not None:
            grade_prompt_sets = [[str(p) for p in prompts] for prompts in grade_prompt_sets]
            sizes = {len(prompts) for prompts in grade_prompt_sets}
            if len(grade_prompt_sets) != self.num_grades or len(sizes) != 1 or 0 in sizes:
                raise ValueError(
                    f"grade_prompt_sets needs {self.num_grades} non-empty lists of equally many prompts (one per "
                    f"grade), got sizes {[len(p) for p in grade_prompt_sets]}"
                )
        self.grade_prompt_sets = grade_prompt_sets
        if (multitask_scenes is None) != (multitask_distortions is None):
            raise ValueError("multitask_scenes and multitask_distortions must be given together (or neither)")
        if multitask_scenes is not None:
            if not multitask_scenes or not multitask_distortions:
                raise ValueError("multitask_scenes and multitask_distortions must not be empty")
            if grade_prompt_sets is not None:
                raise ValueError("grade_prompt_sets and multitask_scenes/multitask_distortions exclude each other")
            for field in ("{scene}", "{distortion}", "{grade}"):
                if field not in multitask_template:
                    raise ValueError(f"multitask_template {multitask_template!r} has no '{field}' field")
        self.multitask_scenes = list(multitask_scenes) if multitask_scenes is not None else None
        self.multitask_distortions = list(multitask_distortions) if multitask_distortions is not None else None
        self.multitask_template = multitask_template
        if prompt_learning is not None and prompt_learning not in PROMPT_LEARNING_METHODS:
            raise ValueError(f"prompt_learning={prompt_learning!r}; expected None or one of {PROMPT_LEARNING_METHODS}")
        self.prompt_learning = prompt_learning
        if int(num_context_tokens) < 1:
            raise ValueError(f"num_context_tokens={num_context_tokens} must be >= 1")
        self.num_context_tokens = int(num_context_tokens)
        if int(prompt_depth) < 1 or (prompt_learning == "coop" and int(prompt_depth) != 1):
            raise ValueError(f"prompt_depth={prompt_depth} must be >= 1 (and 1 for prompt_learning='coop')")
        self.prompt_depth = int(prompt_depth)
        if context_init_std <= 0:
            raise ValueError(f"context_init_std={context_init_std} must be > 0")
        self.context_init_std = float(context_init_std)
        if not context_placeholder or context_placeholder.strip() != context_placeholder or " " in context_placeholder:
            raise ValueError(f"context_placeholder={context_placeholder!r} must be one word without spaces")
        self.context_placeholder = context_placeholder

    def to_dict(self) -> dict[str, Any]:
        """The config as a dict, with every `_name_or_path` (this config's and the nested backbone configs') made
        public: a Hub id is kept, a local folder becomes "<local path>/NAME" (see `public_name_or_path`), so a saved
        or published config.json never records this machine's folders. The attributes themselves are unchanged.
        The backbone config is stored under `backbone_config` (with its `model_type`), never `clip_config`."""
        output = super().to_dict()
        output.pop("clip_config", None)
        if isinstance(self.backbone_config, PretrainedConfig):
            output["backbone_config"] = self.backbone_config.to_dict()
        _make_names_public(output)
        return output


def _without_dtype(config: dict[str, Any]) -> dict[str, Any]:
    """A backbone config dict without the dtype it was loaded in, nested configs included.

    The backbone's dtype is the whole model's: a float32 recorded in a nested config (as a CLIP loaded from a
    folder carries) would keep the towers in float32 when `from_pretrained(..., dtype=torch.bfloat16)` puts the
    head in bfloat16, and the forward would fail on mixed dtypes."""
    cleaned = {}
    for key, value in config.items():
        if key in ("dtype", "torch_dtype"):
            continue
        cleaned[key] = _without_dtype(value) if isinstance(value, dict) and key.endswith("_config") else value
    return cleaned


def _make_names_public(config_dict: dict[str, Any]) -> None:
    """Replaces, in place and at every nesting level, `_name_or_path` values by `public_name_or_path` of them."""
    for key, value in config_dict.items():
        if key == "_name_or_path" and isinstance(value, str):
            config_dict[key] = public_name_or_path(value)
        elif isinstance(value, dict):
            _make_names_public(value)


AGQGConfig.register_for_auto_class()

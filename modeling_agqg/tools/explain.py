"""`agqg explain`: everything AGQG says about one image (score, grade distribution, ability, GRM thresholds),
as text and as a PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..views_agqg import ImageLoadError
from .scoring import (
    DTYPES,
    EXIT_OK,
    EXIT_USAGE,
    Scorer,
    ScoringStream,
    _add_common,
    _api_items,
    load_model,
    resolve_device,
    resolve_dtype,
    resolve_views,
    stream_config,
)

# ---------------------------------------------------------------------------------------------
# agqg explain
# ---------------------------------------------------------------------------------------------


def explain(
    image: Any,
    model: Any,
    *,
    prompt: str | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    views: Any = None,
    crops: int | None = None,
) -> dict[str, Any]:
    """Everything AGQG says about one image: score, grade probabilities, ability, thresholds, discrimination.

    The image is cut into views exactly as `score()` and the pipeline cut it (`views`/`crops` as in `score`).

    Returns a dict with `score`, `grade`, `grade_probs` {name: p}, `ability` (theta), `difficulties`
    [b_1..b_{K-1}] (None for softmax grading), `discrimination` (a, None for softmax grading), `score_range`,
    `views` (the protocol, described).
    """
    torch_device = resolve_device(device)
    model = load_model(model, torch_device)
    protocol = resolve_views(model, views, crops)
    stream = ScoringStream(stream_config(model, protocol, [], 1))
    item = next(_api_items([image], [prompt] if prompt is not None else None))
    batch = stream.load_chunk(0, [item])
    if batch.errors:
        raise ImageLoadError(f"{batch.errors[0][0]}: {batch.errors[0][1]}")
    scorer = Scorer(model, torch_device, resolve_dtype(dtype, torch_device), protocol)
    inputs: dict[str, torch.Tensor] = {"pixel_values": batch.pixel_values.to(torch_device)}
    if prompt is not None:
        tokens = model.tokenize_alignment_prompts(getattr(model, "tokenizer", None), [prompt])
        inputs.update({k: v.to(torch_device) for k, v in tokens.items()})
    with torch.inference_mode(), scorer.autocast():
        output = model(**inputs, num_views=scorer.views, view_aggregation=protocol.aggregation)
    probs = output.grade_probs.float()[0]
    names = scorer.grade_names
    difficulties = output.difficulties
    if difficulties is not None:
        difficulties = difficulties.float().reshape(-1, difficulties.shape[-1])[0].tolist()
    discrimination = output.discrimination
    if discrimination is not None:
        discrimination = float(discrimination.float().reshape(-1)[0])
    return {
        "path": item.key,
        "score": float(output.score.float()[0]),
        "grade": names[int(probs.argmax())],
        "grade_probs": dict(zip(names, probs.tolist(), strict=True)),
        "ability": float(output.ability.float()[0]),
        "difficulties": difficulties,
        "discrimination": discrimination,
        "score_range": list(model.config.score_range),
        "views": protocol.describe(),
    }


def format_explanation(result: dict[str, Any]) -> str:
    """A text report: score, a bar per grade, ability and thresholds."""
    low, high = result["score_range"]
    lines = [
        f"image: {result['path']}",
        f"score: {result['score']:.4f} on [{low:g}, {high:g}]   most probable grade: {result['grade']}",
        f"ability theta: {result['ability']:+.4f}",
    ]
    width = max(len(name) for name in result["grade_probs"])
    for name, prob in result["grade_probs"].items():
        lines.append(f"  {name:<{width}}  {prob:6.3f}  {'#' * round(prob * 40)}")
    if result["difficulties"] is not None:
        thresholds = "  ".join(f"b{i + 1}={b:+.3f}" for i, b in enumerate(result["difficulties"]))
        lines.append(f"difficulty thresholds: {thresholds}   discrimination a={result['discrimination']:.3f}")
    else:
        lines.append("softmax grading: no difficulty thresholds (ability = centred expected grade)")
    return "\n".join(lines)


def plot_explanation(result: dict[str, Any], path: str) -> None:
    """PNG: the grade distribution (top) and, on one latent axis, the GRM category curves, the difficulty
    thresholds b_k and the image's ability theta (bottom); the figure `agqg demo` shows (`demo.explanation_figure`)."""
    from ..modeling_agqg import grm_grade_probs
    from .demo import save_explanation

    save_explanation(result, grm_grade_probs, path)


def run_explain(args: argparse.Namespace) -> int:
    """`agqg explain`: prints the explanation and saves the PNG."""
    try:
        result = explain(
            args.image,
            args.model,
            prompt=args.prompt,
            device=args.device,
            dtype=args.dtype,
            views=args.views,
            crops=args.crops,
        )
    except (ImageLoadError, ValueError) as error:
        print(f"agqg explain: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(format_explanation(result))
    plot = args.plot or f"{Path(args.image).stem}.agqg.png"
    plot_explanation(result, plot)
    print(f"plot: {plot}")
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    """Registers `agqg explain`."""
    explain_parser = subparsers.add_parser(
        "explain",
        help="print and plot one image's grade distribution, ability and difficulty thresholds",
        description="Prints one image's score, grade probabilities, ability and GRM thresholds and saves a PNG.",
    )
    explain_parser.add_argument("image", help="image file")
    _add_common(explain_parser)
    explain_parser.add_argument("--dtype", default="fp32", choices=["auto", *DTYPES], help="(default: fp32)")
    explain_parser.add_argument("--prompt", default=None, help="generation prompt (alignment grading)")
    explain_parser.add_argument("--plot", default=None, help="PNG path (default: <image stem>.agqg.png)")
    explain_parser.set_defaults(func=run_explain)


__all__ = ["add_parser", "explain", "format_explanation", "plot_explanation"]

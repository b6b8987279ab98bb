"""`agqg explain`: everything AGQG says about one image (score, grade distribution, ability, GRM thresholds),
as text and as a PNG.

Exit codes: 0 done; 2 bad command line, image or --model (one line on stderr); 1 the plot could not be written.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from ..views_agqg import ImageLoadError, load_view_image, make_views
from .inputs import is_url
from .scoring import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_USAGE,
    ModelLoadError,
    Scorer,
    _add_common,
    load_model,
    resolve_device,
    resolve_dtype,
    resolve_views,
)

PLOT_EXTRA = 'pip install matplotlib (or pip install "agqg[train]")'

# ---------------------------------------------------------------------------------------------
# agqg explain
# ---------------------------------------------------------------------------------------------


def _check_one_image(image: Any) -> str:
    """The name of the one image `explain` takes (a path or a PIL image), checked before the model loads: a
    folder, a URL or a missing file is an `ImageLoadError` that says so."""
    if not isinstance(image, (str, os.PathLike)):
        return "<image>"
    path = os.fspath(image)
    if os.path.isdir(path):
        raise ImageLoadError(f"{path}: is a folder; explain takes one image file (agqg score takes folders)")
    if is_url(path):
        raise ImageLoadError(f"{path}: URLs are not fetched; download the image and pass its path")
    if not os.path.exists(path):
        raise ImageLoadError(f"{path}: file not found")
    return path


def explain(
    image: Any,
    model: Any,
    *,
    prompt: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    views: Any = None,
    crops: int | None = None,
    revision: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything AGQG says about one image: score, grade probabilities, ability, thresholds, discrimination.

    The image is cut into views exactly as `score()` and the pipeline cut it (`views`/`crops` as in `score`), and
    the dtype is chosen by the same rule (`dtype="auto"`, as `score`), so the score equals `score()`'s.

    Args:
        image: An image file path or a PIL image.
        model: A model object, a local folder or a Hub id (`revision` pins the Hub commit).
        prompt: The generation prompt (alignment grading), or None.
        device, dtype, views, crops, revision: As in `score`.
        progress: Show transformers' loading bars.

    Returns a dict with `path`, `score`, `grade`, `grade_probs` {name: p}, `ability` (theta), `difficulties`
    [b_1..b_{K-1}] (None for softmax grading), `discrimination` (a, None for softmax grading), `score_range`,
    `views` (the protocol, described) and `dtype` (the compute dtype used).

    Raises:
        ImageLoadError: the image cannot be scored (missing, a folder, not an image, over the pixel budget, ...).
        ModelLoadError: the model cannot be loaded.
    """
    name = _check_one_image(image)  # before the model loads: a wrong path fails fast
    torch_device = resolve_device(device)
    model = load_model(model, torch_device, revision=revision, progress=progress)
    protocol = resolve_views(model, views, crops)
    processor = getattr(model, "image_processor", None) or model.default_image_processor()
    spec = model.pixel_spec()
    # The loader and view cutter of score() and the pipeline, so the score is theirs (reduced JPEG decoding too).
    picture = load_view_image(image, protocol, spec, name if name != "<image>" else None)
    pixel_values = make_views(picture, protocol, spec, processor=processor)
    compute_dtype = resolve_dtype(dtype, torch_device)
    scorer = Scorer(model, torch_device, compute_dtype, protocol)
    inputs: dict[str, torch.Tensor] = {"pixel_values": pixel_values.to(torch_device)}
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
        "path": name,
        "score": float(output.score.float()[0]),
        "grade": names[int(probs.argmax())],
        "grade_probs": dict(zip(names, probs.tolist(), strict=True)),
        "ability": float(output.ability.float()[0]),
        "difficulties": difficulties,
        "discrimination": discrimination,
        "score_range": list(model.config.score_range),
        "views": protocol.describe(),
        "dtype": str(compute_dtype).removeprefix("torch."),
    }


def format_explanation(result: dict[str, Any]) -> str:
    """A text report: score, a bar per grade, ability and thresholds."""
    low, high = result["score_range"]
    lines = [
        f"image: {result['path']}",
        f"score: {result['score']:.4f} on [{low:g}, {high:g}]   most probable grade: {result['grade']}",
        f"ability theta: {result['ability']:+.4f}",
    ]
    if "dtype" in result:
        lines.append(f"views: {result['views']}; compute dtype: {result['dtype']}")
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


def default_plot_path(image: str) -> str:
    """`<image folder>/<image stem>.agqg.png`: beside the image, wherever the command runs."""
    folder, filename = os.path.split(image)
    return os.path.join(folder, f"{os.path.splitext(filename)[0]}.agqg.png")


def _error(message: str) -> None:
    print(f"agqg explain: error: {message}", file=sys.stderr)


def run_explain(args: argparse.Namespace) -> int:
    """`agqg explain`: prints the explanation and saves the PNG. Returns the exit code."""
    plot = None if args.no_plot else (args.out or default_plot_path(args.image))
    if plot is not None:
        try:  # checked first: without it the report would print and the plot then fail
            import matplotlib  # noqa: F401
        except ImportError:
            _error(f"the plot needs matplotlib, which is not installed: {PLOT_EXTRA}; or pass --no-plot")
            return EXIT_USAGE
    try:
        result = explain(
            args.image,
            args.model,
            prompt=args.prompt,
            device=args.device,
            dtype=args.dtype,
            views=args.views,
            crops=args.crops,
            revision=args.revision,
        )
    except ModelLoadError as error:
        _error(f"cannot load --model {args.model}: {error}")
        return EXIT_USAGE
    except (ImageLoadError, ValueError) as error:
        _error(str(error))
        return EXIT_USAGE
    print(format_explanation(result))
    if plot is not None:
        try:
            plot_explanation(result, plot)
        except OSError as error:
            _error(f"cannot write the plot {plot}: {error.strerror or error}")
            return EXIT_ABORTED
        print(f"plot: {plot}")
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    """Registers `agqg explain`."""
    explain_parser = subparsers.add_parser(
        "explain",
        help="print and plot one image's grade distribution, ability and difficulty thresholds",
        description="Prints one image's score, grade probabilities, ability and GRM thresholds and saves a PNG "
        f"(the plot needs matplotlib: {PLOT_EXTRA}).",
        epilog="exit codes: 0 done; 2 bad command line, image or --model; 1 the plot could not be written.",
    )
    explain_parser.add_argument("image", help="one image file")
    _add_common(explain_parser)
    explain_parser.add_argument("--prompt", default=None, help="generation prompt (alignment grading)")
    explain_parser.add_argument(
        "--out",
        "--plot",
        dest="out",
        default=None,
        help="where to save the PNG (default: beside the image, <image folder>/<image stem>.agqg.png)",
    )
    explain_parser.add_argument("--no-plot", action="store_true", help="print the report only (no matplotlib needed)")
    explain_parser.set_defaults(func=run_explain)


__all__ = ["add_parser", "explain", "format_explanation", "plot_explanation"]

"""`agqg demo`: a Gradio app that scores dropped or pasted images and shows what AGQG says about each of them.

For each image: the score, the most probable grade and the figure of `agqg explain` (the grade distribution, and the
GRM category curves with the difficulty thresholds b_k and the image's ability theta); for the batch, a sortable
table and a CSV download. Unreadable files (not an image, truncated, too large) get a message in the page.

This one file is also the app of the Hugging Face Space that `agqg push --space` creates (uploaded there as
`agqg_demo.py` next to a small `app.py`), so the Space runs exactly this code. It therefore imports only the standard
library at module level, and gradio, matplotlib, PIL, torch and transformers inside functions; it never imports the
rest of this package. Images are scored by the model's own `image-quality` pipeline
(`transformers.pipeline(..., trust_remote_code=True)` at the given revision): the demo follows the model's
preprocessing, views and dtype, locally and on the Space alike, and reads the GRM thresholds from the model's
outputs during that same pipeline call.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import importlib.util
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = 'pip install "agqg[demo]"'
EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_PORT = 7860
DEFAULT_MAX_IMAGES = 32
DEFAULT_MAX_FILE_MB = 50
THUMBNAIL_PIXELS = 160

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The explanation figure (shared with `agqg explain`)
# ---------------------------------------------------------------------------------------------


def explanation_figure(result: dict[str, Any], grm_grade_probs: Callable[..., Any]) -> Any:
    """The figure of one image's explanation: the grade distribution (top) and, on one latent axis, the GRM category
    curves, the difficulty thresholds b_k and the image's ability theta (bottom).

    `agqg explain` saves it as a PNG and `agqg demo` shows it; this is the one function that draws it.

    Args:
        result: `path`, `score`, `grade`, `grade_probs` {name: p}, `ability`, `difficulties` [b_1..b_{K-1}] or None
            (softmax grading) and `discrimination` (a, or None), as returned by `explain` or `DemoScorer.explain`.
        grm_grade_probs: The model's `grm_grade_probs(ability, difficulties, discrimination)`, which draws the
            category curves (the model's own function, so the curves are the model's maths).

    Returns:
        A `matplotlib.figure.Figure` (not registered with pyplot: safe in threads, nothing to close).
    """
    import torch
    from matplotlib.figure import Figure

    names = list(result["grade_probs"])
    probs = list(result["grade_probs"].values())
    theta = result["ability"]
    figure = Figure(figsize=(8.5, 6))
    top, bottom = figure.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1.2]})
    top.bar(names, probs, color="#4c72b0")
    top.set_ylim(0, 1)
    top.set_ylabel("P(grade)")
    top.set_title(f"{Path(result['path']).name}: score {result['score']:.3f}, grade '{result['grade']}'")
    for index, prob in enumerate(probs):
        top.text(index, prob + 0.02, f"{prob:.2f}", ha="center")
    if result["difficulties"] is not None:
        thresholds = list(result["difficulties"])
        a = result["discrimination"]
        margin = 4.0 / a + 0.5
        low, high = min(thresholds + [theta]) - margin, max(thresholds + [theta]) + margin
        grid = torch.linspace(low, high, 400)
        curves = grm_grade_probs(grid, torch.tensor(thresholds), torch.tensor(a))
        for index, name in enumerate(names):
            bottom.plot(grid.numpy(), curves[:, index].numpy(), label=f"P({name} | theta)")
        for index, b in enumerate(thresholds):
            bottom.axvline(b, color="grey", linestyle="--", linewidth=1)
            bottom.text(b, 1.02, f"b{index + 1}", ha="center", color="grey")
        bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        bottom.text(0.5, 0.5, "softmax grading: no thresholds", transform=bottom.transAxes, ha="center")
    bottom.axvline(theta, color="#c44e52", linewidth=2)
    bottom.text(theta, -0.12, f"theta={theta:+.2f}", ha="center", color="#c44e52")
    bottom.set_ylim(-0.18, 1.1)
    bottom.set_xlabel("latent quality (ability theta; difficulty thresholds b_k)")
    bottom.set_ylabel("P(grade | theta)")
    figure.tight_layout()
    return figure


def save_explanation(result: dict[str, Any], grm_grade_probs: Callable[..., Any], target: Any, dpi: int = 100) -> None:
    """Saves `explanation_figure(result, grm_grade_probs)` to a path (in the format of its suffix, e.g. .png or
    .svg) or, as a PNG, to a binary file object."""
    image_format = None if isinstance(target, (str, os.PathLike)) else "png"
    explanation_figure(result, grm_grade_probs).savefig(target, format=image_format, dpi=dpi)


# ---------------------------------------------------------------------------------------------
# Scoring through the model's pipeline
# ---------------------------------------------------------------------------------------------


class DemoScorer:
    """Scores image files with the model's `image-quality` pipeline and explains each score.

    The score, grade, grade probabilities and ability are the pipeline's output, unchanged. The GRM thresholds and
    discrimination the figure needs are not part of that output: they are read from the model's own outputs during
    the same pipeline call (a forward hook), averaged over the forwards of that call (the views of one image).
    Calls are serialised (one image at a time), so concurrent requests never mix their model outputs.

    Args:
        pipe: An `image-quality` pipeline of an AGQG model (see `load_scorer`).
    """

    def __init__(self, pipe: Any) -> None:
        self.pipeline = pipe
        model = pipe.model
        config = model.config
        self.grade_names: list[str] = list(config.grade_names)
        self.score_range: list[float] = [float(v) for v in config.score_range]
        self.grm_grade_probs = sys.modules[type(model).__module__].grm_grade_probs
        self.image_load_error = getattr(sys.modules[type(pipe).__module__], "ImageLoadError", None)
        self._lock = threading.Lock()
        self._outputs: list[tuple[Any, Any]] | None = None
        model.register_forward_hook(self._record)

    def _record(self, module: Any, args: Any, output: Any) -> None:
        if self._outputs is not None:
            self._outputs.append((output.difficulties, output.discrimination))

    def explain(self, image: Any, prompt: str | None = None, name: str | None = None) -> dict[str, Any]:
        """What the model says about one image (a path or a PIL image), in the form `explanation_figure` reads.

        Returns:
            `path` (`name`, default the file name), `score`, `grade`, `grade_probs`, `ability` (the pipeline's output),
            `difficulties` and `discrimination` (None with softmax grading) and `score_range`.

        Raises:
            Whatever the pipeline raises for the input, e.g. its `ImageLoadError` for a file that is not a readable
            image.
        """
        inputs = {"image": image, "prompt": prompt} if prompt else image
        with self._lock:
            self._outputs = []
            try:
                output = self.pipeline(inputs)
                recorded = self._outputs
            finally:
                self._outputs = None
        if isinstance(output, list):  # a pipeline returns a list for a list input only; be lenient
            output = output[0]
        difficulties, discrimination = _mean_thresholds(recorded)
        return {
            "path": name or (Path(image).name if isinstance(image, (str, os.PathLike)) else "image"),
            "score": float(output["score"]),
            "grade": output["grade"],
            "grade_probs": {key: float(value) for key, value in output["grade_probs"].items()},
            "ability": float(output["ability"]),
            "difficulties": difficulties,
            "discrimination": discrimination,
            "score_range": self.score_range,
        }

    def chart_png(self, result: dict[str, Any]) -> bytes:
        """The explanation figure of `result` as PNG bytes."""
        buffer = io.BytesIO()
        save_explanation(result, self.grm_grade_probs, buffer, dpi=80)
        return buffer.getvalue()

    def is_input_error(self, error: BaseException) -> bool:
        """Whether `error` says the input is bad (not an image, truncated, too large) rather than that the code or
        the model failed (whose traceback the server logs)."""
        too_large = type(error).__name__ == "DecompressionBombError" or isinstance(error, MemoryError)
        return too_large or (self.image_load_error is not None and isinstance(error, self.image_load_error))

    def describe_error(self, error: BaseException, path: str, name: str) -> str:
        """A one-line message for a file that could not be scored (no traceback; temporary paths become `name`)."""
        kind = type(error).__name__
        if kind == "DecompressionBombError" or isinstance(error, MemoryError):
            reason = f"image too large to decode ({error or kind})"
        elif self.is_input_error(error):
            reason = str(error)
        else:
            reason = f"{kind}: {error}" if str(error) else kind
        reason = " ".join(reason.replace(path, name).split())
        if not reason.startswith(name):
            reason = f"{name}: {reason}"
        return reason if len(reason) <= 400 else reason[:397] + "..."


def _mean_thresholds(recorded: Sequence[tuple[Any, Any]]) -> tuple[list[float] | None, float | None]:
    """Mean difficulties (K-1 values) and discrimination over the model outputs of one pipeline call."""
    import torch

    if not recorded or recorded[0][0] is None:
        return None, None
    difficulties = torch.cat([d.detach().float().reshape(-1, d.shape[-1]) for d, _ in recorded]).mean(0)
    discrimination = torch.cat([a.detach().float().reshape(-1) for _, a in recorded]).mean()
    return difficulties.tolist(), float(discrimination)


def load_scorer(
    model: str, *, revision: str | None = None, code_revision: str | None = None, device: str = "cpu"
) -> DemoScorer:
    """The scorer of `model` (a saved folder or a Hub repository id): its own `image-quality` pipeline, remote code
    at `revision` (and `code_revision` for a model whose code lives in a separate code repository), on `device`
    ("cpu", "cuda", "cuda:N" or "auto": CUDA when available)."""
    from transformers import pipeline

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    if code_revision:
        kwargs["code_revision"] = code_revision
    pipe = pipeline("image-quality", model=model, trust_remote_code=True, device=device, **kwargs)
    return DemoScorer(pipe)


# ---------------------------------------------------------------------------------------------
# One request: files -> result cards, table rows, CSV
# ---------------------------------------------------------------------------------------------


def table_headers(grade_names: Sequence[str]) -> list[str]:
    """Columns of the results table and CSV: file, score, grade, ability, P(<grade>)..., error."""
    return ["file", "score", "grade", "ability", *[f"P({name})" for name in grade_names], "error"]


def score_files(
    scorer: DemoScorer,
    files: Sequence[str],
    prompt: str | None = None,
    *,
    max_images: int = DEFAULT_MAX_IMAGES,
    csv_dir: str | None = None,
    names: Sequence[str] | None = None,
) -> tuple[str, list[list[Any]], str | None]:
    """Scores files and renders the page's outputs.

    Args:
        scorer: The model's scorer.
        files: Image file paths (uploads); at most `max_images` are scored, the rest get a message.
        prompt: The generation prompt (alignment grading) applied to every image, or None/empty.
        max_images: The most files scored per request.
        csv_dir: Where to write the CSV (default: a new temporary folder).
        names: Names shown for the files (default: their file names).

    Returns:
        (HTML of the result cards and messages, table rows rounded for display, CSV path with full precision or None
        when nothing was given).
    """
    names = list(names) if names is not None else [Path(path).name for path in files]
    prompt = (prompt or "").strip() or None
    cards, messages, rows = [], [], []
    for index, (path, name) in enumerate(zip(files, names, strict=True)):
        if index >= max_images:
            messages.append(f"{len(files) - max_images} more files were not scored: at most {max_images} at a time.")
            break
        try:
            result = scorer.explain(path, prompt, name=name)
            chart = scorer.chart_png(result)
        except Exception as error:  # any failure of one file is shown as a message; the others are still scored
            message = scorer.describe_error(error, path, name)
            logger.warning("agqg demo: %s", message, exc_info=not scorer.is_input_error(error))
            messages.append(message)
            rows.append([name, None, None, None, *[None] * len(scorer.grade_names), message])
            continue
        cards.append(_card_html(result, chart, _thumbnail_data_url(path), scorer.score_range))
        rows.append(
            [
                name,
                result["score"],
                result["grade"],
                result["ability"],
                *[result["grade_probs"][grade] for grade in scorer.grade_names],
                "",
            ]
        )
    csv_path = _write_csv(rows, scorer.grade_names, csv_dir) if rows else None
    page = _page_html(cards, messages, scored=len(cards), given=len(files), prompt=prompt, scorer=scorer)
    display = [[round(v, 4) if isinstance(v, float) else v for v in row] for row in rows]
    return page, display, csv_path


def _write_csv(rows: list[list[Any]], grade_names: Sequence[str], csv_dir: str | None) -> str:
    folder = csv_dir or tempfile.mkdtemp(prefix="agqg-demo-")
    path = os.path.join(folder, "agqg_scores.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table_headers(grade_names))
        writer.writerows([["" if value is None else value for value in row] for row in rows])
    return path


def _thumbnail_data_url(path: str) -> str | None:
    """A small JPEG of the image for its result card (None when it cannot be made: the card goes without)."""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PIXELS * 2, THUMBNAIL_PIXELS * 2))
            thumbnail = ImageOps.exif_transpose(image).convert("RGB")
            thumbnail.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="JPEG", quality=85)
    except Exception:  # only a picture for the card: the score is already there
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _text(value: Any) -> str:
    """HTML-escaped text that also stays literal inside Gradio's HTML template (`${...}`, backticks)."""
    return html.escape(str(value)).replace("$", "&#36;").replace("`", "&#96;")


def _card_html(result: dict[str, Any], chart: bytes, thumbnail: str | None, score_range: Sequence[float]) -> str:
    low, high = score_range
    name = _text(result["path"])
    picture = f'<img class="agqg-thumb" alt="{name}" src="{thumbnail}">' if thumbnail else ""
    chart_url = "data:image/png;base64," + base64.b64encode(chart).decode("ascii")
    return (
        f'<div class="agqg-card" data-file="{name}" data-score="{result["score"]!r}">'
        f"{picture}"
        f'<div class="agqg-facts"><div class="agqg-name">{name}</div>'
        f'<div class="agqg-big">score <span class="agqg-score">{result["score"]:.4f}</span>'
        f' <span class="agqg-range">on [{low:g}, {high:g}], higher is better</span></div>'
        f'<div>grade <span class="agqg-grade">{_text(result["grade"])}</span>'
        f" &middot; ability &theta; = {result['ability']:+.3f}</div></div>"
        f'<img class="agqg-chart" alt="grade distribution of {name}" src="{chart_url}">'
        "</div>"
    )


def _page_html(
    cards: list[str], messages: list[str], *, scored: int, given: int, prompt: str | None, scorer: DemoScorer
) -> str:
    if not given:
        return '<div class="agqg-results"><p class="agqg-summary">Drop or paste images, then press Score.</p></div>'
    summary = f"Scored {scored} of {given} file{'s' if given != 1 else ''}"
    summary += f" with the prompt &ldquo;{_text(prompt)}&rdquo;." if prompt else "."
    errors = "".join(f'<div class="agqg-error">&#9888; {_text(message)}</div>' for message in messages)
    return f'<div class="agqg-results"><p class="agqg-summary">{summary}</p>{errors}{"".join(cards)}</div>'


_CSS = """
.agqg-card { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; padding: 12px; margin: 10px 0;
  border: 1px solid var(--border-color-primary); border-radius: 8px; }
.agqg-thumb { width: 160px; height: auto; border-radius: 4px; }
.agqg-facts { min-width: 200px; flex: 0 0 auto; }
.agqg-name { font-weight: 600; margin-bottom: 6px; word-break: break-all; }
.agqg-big { font-size: 1.25em; margin-bottom: 4px; }
.agqg-score { font-weight: 700; }
.agqg-range { font-size: 0.75em; opacity: 0.75; }
.agqg-grade { font-weight: 600; }
.agqg-chart { max-width: 680px; width: 100%; height: auto; }
.agqg-error { color: var(--error-text-color, #b91c1c); margin: 6px 0; }
"""


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def build_app(
    model: str | DemoScorer,
    *,
    revision: str | None = None,
    code_revision: str | None = None,
    device: str = "cpu",
    max_images: int = DEFAULT_MAX_IMAGES,
    title: str | None = None,
) -> Any:
    """The Gradio app (a `gr.Blocks`; start it with `.launch()`).

    Args:
        model: A saved model folder or Hub repository id (loaded with `load_scorer`), or a `DemoScorer`.
        revision: The model revision to load (pin a commit sha for a repository you do not control).
        code_revision: The revision of a separate code repository, when the model's code lives in one.
        device: Where the pipeline runs ("cpu", "cuda", ...).
        max_images: The most images scored per request.
        title: Page title (default: "AGQG image quality: <model>").
    """
    import gradio as gr

    if isinstance(model, DemoScorer):
        scorer, label = model, getattr(model.pipeline.model, "name_or_path", "") or "model"
    else:
        scorer = load_scorer(model, revision=revision, code_revision=code_revision, device=device)
        label = model
    title = title or f"AGQG image quality: {label}"
    low, high = scorer.score_range
    about = (
        f"# {_text(title)}\n"
        f"Drop or paste images, optionally type the prompt they were generated from, and press **Score**. Scores are "
        f"on [{low:g}, {high:g}] (higher is better); grades: {', '.join(scorer.grade_names)} (worst to best). Each "
        "chart shows the grade distribution (top) and the Graded Response Model's category curves with the "
        "difficulty thresholds b<sub>k</sub> and the image's ability &theta; (bottom)."
        + (f" Model revision `{_text(revision)}`." if revision else "")
    )

    csv_dirs: list[str] = []  # the last request's CSV folder (Gradio has copied the file into its cache since)

    def run(files: Any, pasted: Any, prompt: str | None) -> tuple[str, Any, Any]:
        paths = [_upload_path(item) for item in (files or [])]
        names = [Path(path).name for path in paths]
        if pasted:
            paths.append(_upload_path(pasted))
            names.append("pasted image")
        while csv_dirs:
            shutil.rmtree(csv_dirs.pop(), ignore_errors=True)
        csv_dirs.append(tempfile.mkdtemp(prefix="agqg-demo-"))
        try:
            page, rows, csv_path = score_files(
                scorer, paths, prompt, max_images=max_images, csv_dir=csv_dirs[0], names=names
            )
        except Exception as error:  # never a traceback in the page
            logger.exception("agqg demo: scoring failed")
            message = _text(" ".join(f"{type(error).__name__}: {error}".split())[:400])
            return f'<div class="agqg-error">&#9888; Scoring failed: {message}</div>', None, None
        return page, rows or None, csv_path

    headers = table_headers(scorer.grade_names)
    datatype = ["str", "number", "str", "number", *["number"] * len(scorer.grade_names), "str"]
    # Uploads and results in Gradio's cache are deleted after an hour (checked hourly).
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(about)
        with gr.Row():
            files = gr.File(
                file_count="multiple", type="filepath", label="Images (drop one or more)", scale=2, elem_id="agqg-files"
            )
            pasted = gr.Image(
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
                scale=1,
                label="...or paste one image (clipboard button below)",
                elem_id="agqg-paste",
            )
        prompt = gr.Textbox(
            label="Generation prompt (optional: turns on alignment-aware grading)", elem_id="agqg-prompt"
        )
        button = gr.Button("Score", variant="primary", elem_id="agqg-score")
        results = gr.HTML(
            _page_html([], [], scored=0, given=0, prompt=None, scorer=scorer), elem_id="agqg-results", css_template=_CSS
        )
        table = gr.Dataframe(
            headers=headers,
            datatype=datatype,
            interactive=False,
            label="All images (sort or filter with a column's ⋮ menu)",
            elem_id="agqg-table",
            wrap=True,
        )
        download = gr.File(label="CSV (full precision)", interactive=False, elem_id="agqg-csv")
        button.click(
            run,
            inputs=[files, pasted, prompt],
            outputs=[results, table, download],
            api_name="score",
            concurrency_limit=1,
        )
    return app


def _upload_path(item: Any) -> str:
    """The local path of an uploaded file, whatever form Gradio hands it over in."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return os.fspath(getattr(item, "path", None) or getattr(item, "name", None) or item["path"])


def launch_options(max_file_mb: int = DEFAULT_MAX_FILE_MB) -> dict[str, Any]:
    """`launch()` settings shared by `agqg demo` and the Space: the upload size limit (Gradio refuses bigger files
    with a message) and no public share link."""
    return {"max_file_size": f"{max_file_mb}mb", "share": False}


# ---------------------------------------------------------------------------------------------
# agqg demo
# ---------------------------------------------------------------------------------------------


def missing_dependencies() -> list[str]:
    """The packages of the `demo` extra that are not installed."""
    missing = []
    for name in ("gradio", "matplotlib"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
            found = False
        if not found:
            missing.append(name)
    return missing


def run_demo(args: argparse.Namespace) -> int:
    """`agqg demo`: loads the model and serves the app on 127.0.0.1 until Ctrl-C."""
    missing = missing_dependencies()
    if missing:
        print(f"agqg demo: {' and '.join(missing)} not installed: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    # Nothing reaches the network by itself: no Gradio analytics or version check, no Hub telemetry.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if args.max_images < 1 or args.max_file_mb < 1:
        print("agqg demo: error: --max-images and --max-file-mb must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        scorer = load_scorer(args.model, revision=args.revision, code_revision=args.code_revision, device=args.device)
    except Exception as error:  # not found, not an AGQG model, no network for a Hub id, ...: one line, no traceback
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
        print(f"agqg demo: error: cannot load {args.model}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    label = Path(args.model).resolve().name if os.path.isdir(args.model) else args.model
    app = build_app(scorer, max_images=args.max_images, title=f"AGQG image quality: {label}")
    try:
        app.launch(
            server_name="127.0.0.1",
            server_port=args.port,
            ssr_mode=False,
            quiet=True,
            prevent_thread_lock=True,
            **launch_options(args.max_file_mb),
        )
    except OSError:  # the port is taken
        print(
            f"agqg demo: error: cannot serve on 127.0.0.1:{args.port}; is it in use? Pass another --port",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"agqg demo: {args.model} at http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        app.block_thread()  # until Ctrl-C (Gradio closes the server)
    except KeyboardInterrupt:
        app.close()
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    """Registers `agqg demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="a local web app: drop or paste images, see score, grade and the grade-distribution chart",
        description=(
            "Starts a Gradio app on 127.0.0.1: drop or paste images (and optionally the generation prompt) to see each "
            "image's score, grade and grade distribution with the GRM thresholds and ability, and a sortable table "
            f"with a CSV download for a batch. Needs the demo extra: {INSTALL_HINT}."
        ),
    )
    parser.add_argument("--model", required=True, help="saved AGQG model folder or Hub repository id")
    parser.add_argument("--revision", default=None, help="model revision (pin a commit sha for a repository of others)")
    parser.add_argument("--code-revision", default=None, help="revision of a separate code repository, if any")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default: {DEFAULT_PORT})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--max-images", type=int, default=DEFAULT_MAX_IMAGES, help=f"images per request (default: {DEFAULT_MAX_IMAGES})"
    )
    parser.add_argument(
        "--max-file-mb",
        type=int,
        default=DEFAULT_MAX_FILE_MB,
        help=f"upload size limit (default: {DEFAULT_MAX_FILE_MB})",
    )
    parser.set_defaults(func=run_demo)


__all__ = [
    "DemoScorer",
    "add_parser",
    "build_app",
    "explanation_figure",
    "launch_options",
    "load_scorer",
    "save_explanation",
    "score_files",
]

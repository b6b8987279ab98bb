"""Cost and fidelity of `model.score_pixels`, the differentiable quality objective.

Randomly initialised full-size shapes (timing does not depend on the weights): CLIP ViT-B/32 (`b32`) and ViT-B/16
(`b16`) at 224 px, SigLIP base patch-16 at 224 px (`siglip-b16`), SigLIP 2 NaFlex base patch-16 at 256 px
(`siglip2-b16`). Each contender alternates repeat by repeat and keeps its best (minimum) time, as `timeit` does;
times are CPU seconds of the process (all its threads): on a machine shared with other jobs, wall-clock time mostly
measures what the others leave us.

1. cost: `score_pixels` on a batch of 512x512 images in [0, 1] (torch resize + normalisation + model), forward
   alone (no_grad) vs forward + backward to the pixels (the reward case: model frozen) vs forward + backward to
   the pixels and every model parameter (fine-tuning the scorer itself). Ratios are in the same process.
2. views: how far the torch views (float, and `quantize=True`) are from the PIL pipeline's (8-bit levels, max and
   mean over every view pixel)
   for several image sizes, and what that does to the score: tiny random models (tests), a random ViT-B/16 CLIP with
   the real CLIP temperature (logit scale 100), and trained models given with `--model FOLDER` (random towers map
   all images to nearly the same embedding, so their scores barely react to pixels; trained ones do).

Usage:
    python benchmarks/bench_differentiable.py                          # both parts, a few minutes on 2 cores
    python benchmarks/bench_differentiable.py --parts cost --models b16 --batch 8 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_agqg import AGQGForImageQualityAssessment  # noqa: E402
from modeling_agqg.backbones_agqg import backbone_classes  # noqa: E402
from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_backbone  # noqa: E402
from modeling_agqg.views_agqg import make_views, tensor_views  # noqa: E402

# (backbone type, config overrides): the released base shapes are the config classes' defaults.
SHAPES = {
    "b32": ("clip", {"vision_config": {"patch_size": 32}}),
    "b16": ("clip", {"vision_config": {"patch_size": 16}}),
    "siglip-b16": ("siglip", {}),
    "siglip2-b16": ("siglip2", {}),
}


def build_model(shape: str, tokenizer) -> AGQGForImageQualityAssessment:
    kind, overrides = SHAPES[shape]
    config_class, model_class = backbone_classes(kind)
    torch.manual_seed(0)
    backbone = model_class(config_class(**overrides))
    return AGQGForImageQualityAssessment.from_backbone(backbone, tokenizer=tokenizer).eval()


def _cpu_seconds(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def _contenders(model: AGQGForImageQualityAssessment, pixels: torch.Tensor) -> dict:
    """forward alone; forward + backward to the pixels (model frozen); forward + backward to pixels and weights."""

    def forward() -> None:
        with torch.no_grad():
            model.score_pixels(pixels)

    def backward_pixels() -> None:
        model.requires_grad_(False)
        leaf = pixels.clone().requires_grad_(True)
        model.score_pixels(leaf).score.sum().backward()

    def backward_all() -> None:
        model.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        leaf = pixels.clone().requires_grad_(True)
        model.score_pixels(leaf).score.sum().backward()

    return {"forward": forward, "pixels": backward_pixels, "all": backward_all}


def bench_cost(models: list[str], batch: int, repeats: int, side: int) -> None:
    tokenizer = clip_character_tokenizer()
    print(f"\n## cost: score_pixels on {batch} images of {side}x{side}, {torch.get_num_threads()} threads, CPU s")
    print("| model | input | forward | + backward to pixels | ratio | + backward to pixels and weights | ratio |")
    print("|---|---|---|---|---|---|---|")
    for shape in models:
        model = build_model(shape, tokenizer)
        pixels = torch.rand(batch, 3, side, side)

        contenders = _contenders(model, pixels)
        for function in contenders.values():  # warm-up
            function()
        best = {name: math.inf for name in contenders}
        for _ in range(repeats):
            for name, function in contenders.items():
                best[name] = min(best[name], _cpu_seconds(function))
        print(
            f"| {shape} | {model.image_size} px | {best['forward']:.2f} s | {best['pixels']:.2f} s "
            f"| {best['pixels'] / best['forward']:.2f}x | {best['all']:.2f} s | {best['all'] / best['forward']:.2f}x |",
            flush=True,
        )


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.integers(-20, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


def bench_views(sizes: list[tuple[int, int]], folders: list[str]) -> None:
    tokenizer = clip_character_tokenizer()
    contenders = {}
    for folder in folders:  # trained models: their scores react to pixel changes as random ones do not
        # Named by the folder and its parent (`.../liqe_agqg/model` -> `liqe_agqg/model`): run folders hold `model/`.
        label = "/".join(Path(folder).resolve().parts[-2:])
        contenders[label] = AGQGForImageQualityAssessment.from_pretrained(folder).eval()
    for kind in ("clip", "siglip", "siglip2"):
        torch.manual_seed(0)
        contenders[f"tiny {kind}"] = AGQGForImageQualityAssessment.from_backbone(
            tiny_backbone(kind, tokenizer), tokenizer=tokenizer
        ).eval()
    clip100 = build_model("b16", tokenizer)
    with torch.no_grad():
        clip100.backbone.logit_scale.fill_(math.log(100.0))
    contenders["ViT-B/16 CLIP, tau 100"] = clip100
    print("\n## views: torch (score_pixels) vs PIL (pipeline), resize protocol")
    print(
        "| model | filter | image | max diff (8-bit levels) | mean diff | |score diff| (1-5 scale) "
        "| quantize=True: mean diff | |score diff| |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, model in contenders.items():
        spec, protocol = model.pixel_spec(), model.view_protocol()
        std = torch.tensor(spec.std).view(3, 1, 1)
        for height, width in sizes:
            image = _image(height, width, seed=height + width)
            reference = make_views(image, protocol, spec)
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float() / 255
            ours = tensor_views(pixels, protocol, spec)
            quantized = tensor_views(pixels, protocol, spec, quantize=True)
            levels = (ours - reference).abs() * std * 255
            quantized_levels = (quantized - reference).abs() * std * 255
            with torch.no_grad():
                expected = model(reference).score
                difference = (expected - model(ours).score).abs().item()
                quantized_difference = (expected - model(quantized).score).abs().item()
            filter_name = Image.Resampling(spec.resample).name.lower()
            print(
                f"| {name} | {filter_name} | {width}x{height} | {levels.max():.2f} | {levels.mean():.3f} "
                f"| {difference:.1e} | {quantized_levels.mean():.3f} | {quantized_difference:.1e} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="cost,views")
    parser.add_argument("--models", default="b32,b16,siglip-b16,siglip2-b16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="512x512,1024x768,300x200,100x60")
    parser.add_argument("--model", action="append", default=[], help="also an AGQG folder (views part; repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    if "cost" in parts:
        bench_cost(args.models.split(","), args.batch, args.repeats, args.side)
    if "views" in parts:
        sizes = [tuple(int(v) for v in size.split("x"))[::-1] for size in args.sizes.split(",")]
        bench_views(sizes, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

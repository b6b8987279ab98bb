"""Training-speed benchmark: the speed features of `training/train.py` against plain loops, in one process.

    python benchmarks/bench_training.py [--batch_size 16] [--steps 8] [--images 256] [--epochs 3]

CLIP ViT-B/32 shapes (`CLIPConfig()` defaults: 224 px, 12+12 layers, text length 77) with random weights;
timing does not depend on the weights.

1. **Steps/s with a frozen text tower.** Baseline: the plain fp32 loop that re-encodes the K grade prompts
   (padded to 77 tokens) through the frozen text tower at every step, with torch's default AdamW. Ours
   (what `training/train.py` does): the grade-text features cached in the model's buffers (no text pass),
   bf16 autocast where the CPU/GPU supports it, the fused AdamW kernel and, on CPU, the exact kernel
   re-formulations of `training/speed.py` (patch embedding as one matrix product, eager attention for
   short sequences). Each step is forward, loss, backward, gradient clipping, optimiser step. The
   intermediate variants are reported too, so the ratio can be attributed.
2. **Head-only epochs with a frozen backbone.** Baseline: an epoch that re-encodes every image with the frozen
   vision tower (fp32, as a plain loop does) and trains the head. Ours: image embeddings computed once with
   `datasets.map` (`training.collate.add_image_embeds`), then epochs over the cached embeddings
   (`training.modeling.CachedEmbeddingScorer`). Reported per epoch, plus the one-time caching cost and the ratio over
   the whole run of `--epochs` epochs.

Targets (issue 3): >= 2x steps/s for (1) and >= 20x per epoch for (2).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import CLIPConfig

from modeling_agqg import AGQGForImageQualityAssessment
from modeling_agqg.tools.offline import random_agqg_model
from training.collate import add_image_embeds
from training.losses import compute_loss
from training.modeling import CachedEmbeddingScorer, make_adamw, parameter_groups, set_trainable
from training.options import cpu_has_fast_bf16
from training.speed import speed_up_vision_training

LOSS_WEIGHTS = {"l1": 1.0}


def build_vit_b32(**overrides: Any) -> AGQGForImageQualityAssessment:
    """AGQG around a randomly initialised CLIP with ViT-B/32 shapes (text vocabulary 49408)."""
    return random_agqg_model(CLIPConfig(), seed=0, **overrides)


# Where part 1 runs ("cpu" or "cuda"); part 2 always runs on the CPU.
_device = "cpu"


def _autocast(enabled: bool, device: str = "cpu") -> contextlib.AbstractContextManager:
    return torch.autocast(device, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _synchronize() -> None:
    if _device == "cuda":
        torch.cuda.synchronize()


# Which clock the ratios use: "wall" (time.perf_counter) or "cpu" (time.process_time, this process's CPU time,
# which time-slicing by other processes on a shared machine does not inflate; meaningful as a speed measure
# with one compute thread).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock_name = "wall"


def _interleaved_medians(variants: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each variant on the selected clock. Variants take turns within every round, so load
    from other processes affects them alike instead of biasing whichever ran during a busy spell."""
    clock = CLOCKS[_clock_name]
    for step in variants.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            _synchronize()
            started = clock()
            step()
            _synchronize()
            times[name].append(clock() - started)
    return {name: float(np.median(values)) for name, values in times.items()}


def bench_steps(batch_size: int, steps: int, use_bf16: bool) -> dict[str, Any]:
    """(1): seconds per training step for {re-encode prompts, cached} x {fp32, bf16}, and ours: cached, bf16
    where supported, fused AdamW and (on CPU) the exact kernel re-formulations of `training/speed.py`."""
    plain_model = build_vit_b32().to(_device)
    fast_model = copy.deepcopy(plain_model)
    applied = speed_up_vision_training(fast_model) if _device == "cpu" else []
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch_size, 3, 224, 224, generator=generator).to(_device)
    labels = (torch.rand(batch_size, generator=generator) * 4 + 1).to(_device)
    optimizers = {}
    for key, model in (("plain", plain_model), ("fast", fast_model)):
        set_trainable(model, freeze_backbone=False, freeze_text_tower=True)
        model.train()
        groups = parameter_groups(model, head_lr=1e-4, backbone_lr=1e-5, weight_decay=0.01)
        # The plain loop's default (for-each) AdamW, and the fused one train.py uses.
        optimizers[key] = (torch.optim.AdamW(groups), make_adamw(groups))

    def make_step(reencode: bool, bf16: bool, fast: bool = False) -> Callable[[], None]:
        model = fast_model if fast else plain_model
        plain_optimizer, fused_optimizer = optimizers["fast" if fast else "plain"]
        optimizer = plain_optimizer if reencode and not bf16 else fused_optimizer
        prompt_ids, prompt_mask = model.grade_prompt_ids, model.grade_prompt_mask  # (K, 77)

        def step() -> None:
            with _autocast(bf16, _device):
                if reencode:
                    output = model(pixel_values=pixel_values, input_ids=prompt_ids, attention_mask=prompt_mask)
                else:
                    output = model(pixel_values=pixel_values)
            loss, _ = compute_loss(output, labels, weights=LOSS_WEIGHTS, score_range=(1.0, 5.0), num_grades=5)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()

        return step

    variants = {
        "baseline_fp32_reencode": make_step(True, False),
        "fp32_cached_text_fused": make_step(False, False),
    }
    if use_bf16:
        variants["bf16_reencode_fused"] = make_step(True, True)
        variants["bf16_cached_fused"] = make_step(False, True)
    if applied:
        variants["fp32_cached_fused_fast_kernels"] = make_step(False, False, fast=True)
    ours = ("bf16" if use_bf16 else "fp32") + "_cached_fused" + ("_fast_kernels" if applied else "")
    if ours not in variants:
        variants[ours] = make_step(False, use_bf16, fast=bool(applied))
    seconds = _interleaved_medians(variants, steps)
    return {
        "batch_size": batch_size,
        "fast_kernels": applied,
        "seconds_per_step": seconds,
        "steps_per_second": {k: 1.0 / v for k, v in seconds.items()},
        "speedup_vs_baseline": {k: seconds["baseline_fp32_reencode"] / v for k, v in seconds.items()},
        "ours": ours,
        "ratio": seconds["baseline_fp32_reencode"] / seconds[ours],
    }


def _batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def bench_head_only(num_images: int, batch_size: int, epochs: int, use_bf16: bool) -> dict[str, Any]:
    """(2): seconds per head-only epoch, re-encoding images vs cached embeddings."""
    import datasets
    from PIL import Image

    model = build_vit_b32()
    set_trainable(model, freeze_backbone=True, freeze_text_tower=False)
    processor = model.default_image_processor()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(num_images)]
    labels = (rng.random(num_images) * 4 + 1).astype(np.float32)
    rows = datasets.Dataset.from_dict({"image": images, "mos": labels}).cast_column("image", datasets.Image())
    # Both sides start from ready pixel tensors for the re-encoding loop, so only the model work is compared.
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    label_tensor = torch.from_numpy(labels)

    def train_epoch(score: Callable[[slice], Any]) -> None:
        optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
        model.train()
        for batch in _batches(num_images, batch_size):
            output = score(batch)
            loss, _ = compute_loss(output, label_tensor[batch], weights=LOSS_WEIGHTS, score_range=(1.0, 5.0),
                                   num_grades=5)  # fmt: skip
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    def reencode_epoch(bf16: bool) -> None:
        def score(batch: slice) -> Any:
            with _autocast(bf16):
                return model(pixel_values=pixel_values[batch])

        train_epoch(score)

    started = time.perf_counter()
    with _autocast(use_bf16):
        cached = add_image_embeds(rows, model, batch_size=batch_size, desc="caching")
    cache_seconds = time.perf_counter() - started
    embeds = torch.tensor(np.asarray(cached["image_embeds"]), dtype=torch.float32)
    scorer = CachedEmbeddingScorer(model)

    def cached_epoch() -> None:
        train_epoch(lambda batch: scorer(embeds[batch]))

    variants = {"baseline_fp32_reencode_epoch": lambda: reencode_epoch(False), "cached_embeddings_epoch": cached_epoch}
    if use_bf16:
        variants["bf16_reencode_epoch"] = lambda: reencode_epoch(True)
    seconds = _interleaved_medians(variants, repeats=3, warmup=0)
    baseline_run = epochs * seconds["baseline_fp32_reencode_epoch"]
    ours_run = cache_seconds + epochs * seconds["cached_embeddings_epoch"]
    return {
        "images": num_images,
        "batch_size": batch_size,
        "seconds": seconds,
        "one_time_caching_seconds": cache_seconds,
        "ratio_per_epoch": seconds["baseline_fp32_reencode_epoch"] / seconds["cached_embeddings_epoch"],
        "ratio_per_epoch_vs_bf16_reencode": (
            seconds["bf16_reencode_epoch"] / seconds["cached_embeddings_epoch"] if use_bf16 else None
        ),
        f"ratio_whole_run_{epochs}_epochs_incl_caching": baseline_run / ours_run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (median)")
    parser.add_argument("--images", type=int, default=128, help="images per head-only epoch")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for the whole-run ratio of part 2")
    parser.add_argument("--no_bf16", action="store_true", help="fp32 only, even on CPUs with fast bf16")
    parser.add_argument("--parts", default="steps,head", help="which parts to run: steps, head or both")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (use with OMP_NUM_THREADS=1 on a busy machine)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where part 1 runs")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    global _clock_name, _device
    _clock_name = args.clock
    _device = args.device
    if _device == "cuda":
        use_bf16 = torch.cuda.is_bf16_supported() and not args.no_bf16
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, bf16 autocast: {use_bf16}, "
              f"clock: {args.clock}")  # fmt: skip
    else:
        use_bf16 = cpu_has_fast_bf16() and not args.no_bf16
        capability = torch.backends.cpu.get_cpu_capability()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {capability}, "
              f"bf16 autocast: {use_bf16}, clock: {args.clock}")  # fmt: skip

    parts = set(args.parts.split(","))
    results: dict[str, Any] = {}
    if "steps" in parts:
        results["steps"] = _report_steps(args, use_bf16)
    if "head" in parts:
        results["head_only"] = _report_head(args, cpu_has_fast_bf16() and not args.no_bf16)  # CPU only
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _report_steps(args: argparse.Namespace, use_bf16: bool) -> dict[str, Any]:
    steps = bench_steps(args.batch_size, args.steps, use_bf16)
    print(f"\n(1) training steps on {args.device}, ViT-B/32 shapes, batch {args.batch_size}, frozen text tower")
    for name, value in steps["seconds_per_step"].items():
        print(f"    {name:<32} {value:7.3f} s/step  {1 / value:6.2f} steps/s  "
              f"{steps['speedup_vs_baseline'][name]:5.2f}x")  # fmt: skip
    print(f"    ours = {steps['ours']} (fast kernels: {', '.join(steps['fast_kernels']) or 'none'})")
    print(f"    ratio ours/baseline: {steps['ratio']:.2f}x (target >= 2x)")
    return steps


def _report_head(args: argparse.Namespace, use_bf16: bool) -> dict[str, Any]:
    head = bench_head_only(args.images, args.batch_size * 4, args.epochs, use_bf16)
    print(f"\n(2) head-only epochs, frozen ViT-B/32 backbone, {args.images} images")
    for name, value in head["seconds"].items():
        print(f"    {name:<30} {value:8.3f} s")
    print(f"    one-time caching (datasets.map) {head['one_time_caching_seconds']:.3f} s")
    print(f"    ratio per epoch vs fp32 re-encoding: {head['ratio_per_epoch']:.0f}x (target >= 20x)")
    if head["ratio_per_epoch_vs_bf16_reencode"]:
        print(f"    ratio per epoch vs bf16 re-encoding: {head['ratio_per_epoch_vs_bf16_reencode']:.0f}x")
    key = f"ratio_whole_run_{args.epochs}_epochs_incl_caching"
    print(f"    whole run of {args.epochs} epochs incl. caching: {head[key]:.1f}x")
    return head


if __name__ == "__main__":
    sys.exit(main())

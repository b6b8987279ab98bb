"""Does the predicted spread of the grade distribution predict rater disagreement? Measured on the synthetic set.

    python examples/uncertainty_synthetic.py                       # both gradings, L1 and L1 + GRM NLL, tiny CLIP
    python examples/uncertainty_synthetic.py --backbone siglip --losses l1 --epochs 5

For each grading (softmax, agqg) and loss, a tiny backbone is trained from scratch for a few epochs on the
synthetic quality set (`training.synthetic`: 16-pixel crops of real photographs with graded distortions, MOS and
`mos_std` from 25 simulated raters; test photos held out), then evaluated on the test split: SRCC of the score with
the MOS, and `modeling_agqg.tools.uncertainty.uncertainty_metrics` (Spearman of `grade_std` and of `grade_entropy`
with `mos_std`). Two references put the numbers in context: the Spearman of `mos_std` with -|MOS - 3| (the
raters' own mean: on a clipped 1-5 scale, disagreement is largest mid-scale) and with -|score - 3| (the same rule
applied to the predicted score, no spread needed).

Losses: `l1` is the model's score loss (the spread is not supervised); `l1+grm_nll` adds the GRM negative
log-likelihood of soft grade labels built from (MOS, mos_std) (`training.losses.grm_nll_loss`), which does
supervise it. Prints one JSON line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _arrays(split: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, S, S), MOS (N,), mos_std (N,) of a synthetic split."""
    images = torch.stack(
        [torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1) for image in split["image"]]
    )
    return images, torch.tensor(split["mos"], dtype=torch.float32), torch.tensor(split["mos_std"], dtype=torch.float32)


def build_model(backbone: str, grading: str, seed: int) -> Any:
    """A tiny backbone (16-pixel views, 2-pixel patches, width 64, 2 layers) + AGQG, as the quickstart's."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_backbone

    tokenizer = clip_character_tokenizer()
    options = {"image_size": 16, "patch_size": 2, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    if backbone == "clip":
        options["projection_dim"] = 64
    torch.manual_seed(seed)
    return AGQGForImageQualityAssessment.from_backbone(
        tiny_backbone(backbone, tokenizer, **options), tokenizer=tokenizer, grading=grading, score_range=(1.0, 5.0)
    )


def train_and_evaluate(
    data: Any,
    backbone: str,
    grading: str,
    loss: str,
    epochs: int,
    seed: int,
    batch_size: int = 32,
    save_dir: str | None = None,
) -> dict[str, Any]:
    """Trains one tiny model and returns its test metrics (and saves the model folder under `save_dir`)."""
    from modeling_agqg.tools.uncertainty import spearman, uncertainty_metrics

    model = build_model(backbone, grading, seed)
    spec = model.pixel_spec()
    for parameter in model.text_tower_parameters():  # fixed random text tower: cached grade-text features
        parameter.requires_grad_(False)
    train_images, train_mos, train_std = _arrays(data["train"])
    test_images, test_mos, test_std = _arrays(data["test"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-3, weight_decay=0.01)
    steps = epochs * math.ceil(len(train_mos) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    grm_nll = None
    if loss == "l1+grm_nll":
        from training.losses import grm_nll_loss as grm_nll
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_mos), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            pixels = train_images[index]
            turns = int(torch.randint(0, 4, (), generator=generator))
            pixels = torch.rot90(pixels, turns, dims=(2, 3))
            if bool(torch.randint(0, 2, (), generator=generator)):
                pixels = pixels.flip(-1)
            output = model(spec.normalize(pixels), labels=train_mos[index])
            objective = output.loss / 4.0  # L1 in units of the score range
            if grm_nll is not None:
                objective = objective + grm_nll(
                    output.grade_probs, train_mos[index], train_std[index], score_range=(1.0, 5.0), num_grades=5
                )
            optimizer.zero_grad()
            objective.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - started
    model.eval()
    if save_dir is not None:
        model.save_pretrained(Path(save_dir) / f"{backbone}-{grading}-{loss}-seed{seed}")
    with torch.no_grad():
        outputs = [model(spec.normalize(test_images[i : i + 256])) for i in range(0, len(test_mos), 256)]
    score = torch.cat([o.score for o in outputs])
    grade_std = torch.cat([o.grade_std for o in outputs])
    entropy = torch.cat([o.grade_entropy for o in outputs])
    metrics = uncertainty_metrics(grade_std, entropy, test_std)
    return {
        "backbone": backbone,
        "grading": grading,
        "loss": loss,
        "epochs": epochs,
        "seed": seed,
        "train_images": len(train_mos),
        "test_images": len(test_mos),
        "srcc_score_mos": spearman(score.numpy(), test_mos.numpy()),
        **metrics,
        "ref_srcc_mos_midness": spearman(-(test_mos - 3).abs().numpy(), test_std.numpy()),
        "ref_srcc_score_midness": spearman(-(score - 3).abs().numpy(), test_std.numpy()),
        "train_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="clip", choices=("clip", "siglip", "siglip2"))
    parser.add_argument("--gradings", default="softmax,agqg")
    parser.add_argument("--losses", default="l1,l1+grm_nll")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default="runs/synthetic16", help="synthetic dataset cache folder")
    parser.add_argument("--save", help="save each trained model folder under this folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from training.synthetic import build_synthetic_dataset

    data = build_synthetic_dataset(args.cache, image_size=16, seed=0, crops_per_source=30)
    results = []
    for loss in args.losses.split(","):
        for grading in args.gradings.split(","):
            result = train_and_evaluate(data, args.backbone, grading, loss, args.epochs, args.seed, save_dir=args.save)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(
        "\n| backbone | grading | loss | SRCC score-MOS | Spearman grade_std-mos_std | Spearman entropy-mos_std "
        "| mean grade_std | mean mos_std |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['backbone']} | {r['grading']} | {r['loss']} | {r['srcc_score_mos']:.3f} "
            f"| {r['spread_srcc_std']:+.3f} | {r['spread_srcc_entropy']:+.3f} | {r['mean_grade_std']:.3f} "
            f"| {r['mean_mos_std']:.3f} |"
        )
    print(
        f"\nreferences: Spearman(-|MOS-3|, mos_std) = {results[0]['ref_srcc_mos_midness']:+.3f}; "
        + ", ".join(f"{r['grading']}/{r['loss']}: -|score-3| {r['ref_srcc_score_midness']:+.3f}" for r in results)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

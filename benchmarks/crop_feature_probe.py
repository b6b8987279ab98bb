r"""Is a distortion's label in the pixels of a synthetic crop? A linear probe on three hand-made features.

The quickstart's tiny ViT learns blur and noise but hardly JPEG (docs/training.md, "Quickstart"). This script asks
whether the JPEG labels can be read off the distorted crops at all, without the model: for crops of a synthetic
dataset folder (a quickstart run's `synthetic_data`) it measures, on the luminance Y of each crop (H, W),

    gradient    G = mean |Y[i+1, j] - Y[i, j]| + mean |Y[i, j+1] - Y[i, j]|   (the gradient energy the labels'
                    sharpness measure uses, `training.synthetic.degradation_measures`)
    blockiness  B = max over phases p = 0..7 of (mean |dx| on columns p, p+8, ... + mean |dy| on rows p, p+8, ...)
                    / (G / 2), the strongest 8-pixel grid of steps relative to the steps everywhere (JPEG's 8x8
                    blocks put their edges on one such grid, at any phase on a crop cut anywhere)
    flatness    F = the share of horizontal steps below one grey level,

reports each feature's Spearman correlation with the crops' noise-free label (`true_quality`), and fits
q ~ 1, G, B, F, G*B, log(1 + G) by least squares on one half of the crops (drawn at random) and reports the
Spearman correlation of its predictions on the other half. A high value says the label is in the pixels and a model
that misses it fails to find it.

    python training/quickstart.py --output_dir /tmp/jpeg_only --synthetic_distortions jpeg   # ~2 minutes
    python benchmarks/crop_feature_probe.py /tmp/jpeg_only/synthetic_data
"""

from __future__ import annotations

import argparse

import numpy as np

from training.synthetic import LUMA_WEIGHTS

FEATURES = ("gradient", "blockiness", "flatness")


def crop_features(rgb: np.ndarray) -> tuple[float, float, float]:
    """(G, B, F) of the module docstring for one RGB uint8 crop (H, W, 3)."""
    luminance = rgb.astype(np.float64) @ LUMA_WEIGHTS
    steps_down = np.abs(np.diff(luminance, axis=0))
    steps_right = np.abs(np.diff(luminance, axis=1))
    gradient = float(steps_right.mean() + steps_down.mean())
    blockiness = max(
        float(steps_right[:, phase::8].mean() + steps_down[phase::8, :].mean()) / (gradient / 2 + 1e-3)
        for phase in range(8)
    )
    return gradient, blockiness, float((steps_right < 1).mean())


def main() -> None:
    import datasets
    from scipy.stats import spearmanr

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a synthetic dataset folder (a quickstart run's synthetic_data)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-crops", type=int, default=1500, help="crops drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = datasets.load_from_disk(args.data)[args.split]
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(rows), min(args.num_crops, len(rows)), replace=False)
    features = np.array([crop_features(np.asarray(rows[int(i)]["image"].convert("RGB"))) for i in picked])
    labels = rows.select_columns(["true_quality", "distortion"])[picked]
    quality = np.asarray(labels["true_quality"], dtype=np.float64)
    distortions = sorted(set(labels["distortion"]))
    print(f"{len(picked)} {args.split} crops of {args.data} (distortions: {', '.join(distortions)})")
    for column, name in enumerate(FEATURES):
        print(f"  Spearman of {name:<10} and the label: {spearmanr(features[:, column], quality)[0]:+.3f}")
    design = np.column_stack(
        [np.ones(len(features)), features, features[:, 0] * features[:, 1], np.log1p(features[:, 0])]
    )
    order = rng.permutation(len(design))
    fit, held_out = order[: len(order) // 2], order[len(order) // 2 :]
    weights, *_ = np.linalg.lstsq(design[fit], quality[fit], rcond=None)
    rho = spearmanr(design[held_out] @ weights, quality[held_out])[0]
    print(f"  linear fit on half the crops, Spearman on the other half: {rho:+.3f}")


if __name__ == "__main__":
    main()

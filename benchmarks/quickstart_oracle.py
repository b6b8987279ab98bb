r"""The ceiling of the quickstart's full-size ranking: what a perfect crop grader would score.

The quickstart's model grades each of the 64 crops its view protocol cuts from a full-size photo and averages the
scores (`training.quickstart.full_size_ranking`). Its training labels are the *measured* quality of a distorted
crop against its pristine crop (`training.synthetic.measured_quality`). This script replaces the model by that
measurement: for every photo, distortion and level of `RANKING_LEVELS` it distorts the whole photo, cuts the same
crop grid (`modeling_agqg.views_agqg.crop_grid`) from the pristine and the distorted photo, averages the measured
quality of the crops (4.6 for the photo as shipped), and reports the pooled Spearman of score and level
(`training.quickstart.pooled_spearman`) for the test photos of a synthetic split (`--split`, default 0: the
quickstart's two held-out photos, `training.synthetic.split_sources`) and for every pair of photos. A model that
learnt its labels perfectly would score this; the gap to the quickstart's own table is what the tiny model does not
learn.

    python benchmarks/quickstart_oracle.py                 # 32-pixel crops, as the quickstart's model
    python benchmarks/quickstart_oracle.py --crop-size 16  # the previous quickstart's crops
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from modeling_agqg.views_agqg import crop_grid
from training.quickstart import RANKING_LEVELS, pooled_spearman
from training.synthetic import Q_PRISTINE, available_source_photos, distort, measured_quality, split_sources


def oracle_scores(crop_size: int, num_crops: int, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """{distortion: {photo: [mean measured crop quality at level 0..5]}} for every available source photo."""
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, list[float]]] = {}
    for name, photo in available_source_photos().items():
        corners = crop_grid(photo.shape[0], photo.shape[1], crop_size, crop_size, num_crops)
        pristine = [photo[top : top + crop_size, left : left + crop_size] for top, left in corners]
        for kind, parameters in RANKING_LEVELS.items():
            row = [Q_PRISTINE]
            for parameter in parameters:
                distorted = distort(photo, kind, parameter, rng)
                qualities = [
                    measured_quality(reference, distorted[top : top + crop_size, left : left + crop_size])
                    for reference, (top, left) in zip(pristine, corners, strict=True)
                ]
                row.append(float(np.mean(qualities)))
            scores.setdefault(kind, {})[name] = row
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--num-crops", type=int, default=64)
    parser.add_argument("--split", type=int, default=0, help="the synthetic split (0: the quickstart's)")
    args = parser.parse_args()
    test_photos = split_sources(list(available_source_photos()), seed=args.split)["test"]
    scores = oracle_scores(args.crop_size, args.num_crops)
    print(f"Mean measured crop quality, {args.num_crops} grid crops of {args.crop_size} px, levels 0-5:")
    for kind, by_photo in scores.items():
        for name, row in by_photo.items():
            print(f"  {kind:<6} {name:<22} " + " ".join(f"{value:.2f}" for value in row))
    print("Pooled Spearman of score and level:")
    for kind, by_photo in scores.items():
        test_pair = pooled_spearman([by_photo[name] for name in test_photos])
        pairs = [pooled_spearman([by_photo[a], by_photo[b]]) for a, b in itertools.combinations(by_photo, 2)]
        print(
            f"  {kind:<6} test photos of split {args.split} {test_pair:+.2f}   every pair of photos: "
            f"best {min(pairs):+.2f}, median {float(np.median(pairs)):+.2f}, worst {max(pairs):+.2f}"
        )


if __name__ == "__main__":
    main()

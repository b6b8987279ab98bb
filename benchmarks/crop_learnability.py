r"""Which small image model learns the synthetic crop labels? A tiny ViT, a small CNN and the tiny ALIGN tower.

The quickstart's former tiny CLIP (a ViT) learnt blur and noise but hardly JPEG, although the JPEG labels can be
read off the crops (`benchmarks/crop_feature_probe.py`, docs/training.md). This script asks whether the vision
architecture is what fails: it trains small regressors on the crops of a synthetic dataset folder (a quickstart
run's `synthetic_data`) with the same loss, optimiser, batches and augmentation, and reports the Spearman
correlation of their predictions with the MOS on the training and the test crops (overall, and within each
distortion with `--by-distortion`):

    vit    the former quickstart's vision tower (the vision side of `modeling_agqg.tools.offline.tiny_clip_config`
           with the `tiny_*` options of training/configs/quickstart.yaml: 32 px, width 64, 2 layers, 2 heads, and
           4-pixel patches (`--patch_size` overrides); its patch embedding is one linear map of each patch) and a
           linear map of its pooled output (108 k parameters);
    cnn    four 3x3 convolutions with GELU (32, 32, 64 and 64 channels, the last two with stride 2), the spatial
           mean, a linear map (66 k parameters);
    align  the quickstart's image tower now: the EfficientNet of `tiny_align_config` with quickstart.yaml's
           `tiny_*` options (stride-2 stem, three stages of depthwise 3x3 blocks with squeeze-and-excitation and
           BatchNorm, 32 channels out) and a linear map of its spatial mean (22 k parameters).

All: L1 loss on the MOS, AdamW (learning rate 2e-3, weight decay 0.01), batches of 32 drawn with replacement,
each batch flipped left-right with probability 1/2 and turned by a random quarter turn (the quickstart's
augmentation), `--steps` steps, one thread. Pixels are scaled to (x / 255 - 0.45) / 0.27. None sees the grade
prompts or the AGQG head: this measures what the image side can learn, not the quickstart's model.

    python training/quickstart.py --output_dir /tmp/jpeg_only --synthetic_distortions jpeg    # its data
    python benchmarks/crop_learnability.py /tmp/jpeg_only/synthetic_data --seeds 0 1
    python benchmarks/crop_learnability.py runs/quickstart/synthetic_data --seeds 0 1 --by-distortion
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

PIXEL_MEAN, PIXEL_STD = 0.45, 0.27


def quickstart_tiny_shapes() -> dict[str, int]:
    """The quickstart's tiny backbone shapes (`tiny_*` options of quickstart.yaml) as `tiny_backbone_config`
    keywords."""
    from training.options import check_options, read_yaml_options

    return check_options(read_yaml_options("quickstart.yaml"), "quickstart.yaml").model.tiny_clip_shapes()


class _TowerRegressor(nn.Module):
    """A vision tower of `modeling_agqg.tools.offline`'s tiny builders (quickstart.yaml's shapes at `image_size`)
    and a linear map of its pooled output."""

    def __init__(self, kind: str, image_size: int, patch_size: int) -> None:
        super().__init__()
        import transformers

        from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_backbone_config

        shapes = {**quickstart_tiny_shapes(), "image_size": image_size, "patch_size": patch_size}
        family = "clip" if kind == "vit" else "align"
        config = tiny_backbone_config(family, clip_character_tokenizer(), **shapes).vision_config
        tower_class = transformers.CLIPVisionModel if family == "clip" else transformers.AlignVisionModel
        self.tower = tower_class(config)
        # The pooled width: the ViT's hidden size; the EfficientNet's last stage channels (width coefficient 1).
        self.out = nn.Linear(config.hidden_size if family == "clip" else config.out_channels[-1], 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self.tower(pixel_values=pixels).pooler_output
        return self.out(pooled.reshape(len(pooled), -1)).squeeze(-1)


def _cnn_regressor() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 1),
        nn.Flatten(0),
    )


def load_crops(folder: str, split: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(pixels (N, 3, S, S) scaled as the module docstring says, MOS (N,), distortion name (N,)) of one split of a
    synthetic folder."""
    import datasets

    data = datasets.load_from_disk(folder)[split]
    pixels = np.stack([np.asarray(image.convert("RGB")) for image in data["image"]]).astype(np.float32)
    pixels = (pixels / 255.0 - PIXEL_MEAN) / PIXEL_STD
    mos = torch.tensor(data["mos"], dtype=torch.float32)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), mos, np.asarray(data["distortion"])


def _predict(model: nn.Module, pixels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(pixels[i : i + 512]) for i in range(0, len(pixels), 512)]).numpy()


def train_and_test(
    kind: str,
    train: tuple[torch.Tensor, torch.Tensor, np.ndarray],
    test: tuple[torch.Tensor, torch.Tensor, np.ndarray],
    steps: int,
    seed: int,
    patch_size: int = 4,
) -> dict[str, object]:
    """Trains one regressor (`vit`, `cnn` or `align`) as the module docstring says (`patch_size`: the ViT's);
    returns its parameter count, seconds, the Spearman correlation of prediction and MOS on the training and the
    test crops, and on the test crops of each distortion ("none": the pristine crops, whose MOS barely varies)."""
    torch.manual_seed(seed)
    model = _cnn_regressor() if kind == "cnn" else _TowerRegressor(kind, train[0].shape[-1], patch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(train[0]), (32,), generator=generator)
        pixels = train[0][index]
        if torch.rand((), generator=generator) < 0.5:
            pixels = pixels.flip(-1)
        pixels = torch.rot90(pixels, int(torch.randint(4, (), generator=generator)), (2, 3))
        loss = (model(pixels) - train[1][index]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    model.eval()
    predicted = _predict(model, test[0])
    by_distortion = {
        str(name): float(spearmanr(predicted[test[2] == name], test[1][test[2] == name])[0])
        for name in sorted(set(test[2].tolist()))
        if name != "none"
    }
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds,
        "train": float(spearmanr(_predict(model, train[0]), train[1])[0]),
        "test": float(spearmanr(predicted, test[1])[0]),
        "by_distortion": by_distortion,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a synthetic dataset folder (a quickstart run's synthetic_data)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", choices=("vit", "cnn", "align"), default=["vit", "cnn", "align"])
    parser.add_argument("--patch_size", type=int, default=4, help="the ViT's patch size (the former quickstart's: 4)")
    parser.add_argument("--by-distortion", action="store_true", help="also the test SRCC within each distortion")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = load_crops(args.data, "train"), load_crops(args.data, "test")
    print(f"{args.data}: {len(train[0])} training and {len(test[0])} test crops of {train[0].shape[-1]} px")
    print(f"  {'model':<5} {'seed':>4} {'params':>8} {'seconds':>8}  {'train SRCC':>10}  {'test SRCC':>9}")
    for kind in args.models:
        for seed in args.seeds:
            result = train_and_test(kind, train, test, args.steps, seed, args.patch_size)
            line = (
                f"  {kind:<5} {seed:4d} {result['parameters']:8d} {result['seconds']:8.0f}  "
                f"{result['train']:10.3f}  {result['test']:9.3f}"
            )
            if args.by_distortion:
                line += "  " + "  ".join(f"{name} {rho:+.2f}" for name, rho in result["by_distortion"].items())
            print(line, flush=True)


if __name__ == "__main__":
    main()

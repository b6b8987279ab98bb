r"""Which small image model learns the synthetic crop labels? The quickstart's tiny ViT against a small CNN.

The quickstart's tiny CLIP learns blur and noise but hardly JPEG, although the JPEG labels can be read off the
crops (`benchmarks/crop_feature_probe.py`, docs/training.md). This script asks whether the vision architecture is
what fails: it trains two small regressors (about 108 k and 66 k parameters) on the crops of a synthetic dataset
folder (a quickstart run's `synthetic_data`) with the same loss, optimiser, batches and augmentation, and reports
the Spearman correlation of their predictions with the MOS on the training and the test crops:

    vit  the quickstart's vision tower (the vision side of `modeling_agqg.tools.offline.tiny_clip_config` with the
         `tiny_*` options of training/configs/quickstart.yaml: 32 px, 4-pixel patches (`--patch_size` overrides),
         width 64, 2 layers, 2 heads; its patch embedding is one linear map of each patch) and a linear map of its
         pooled output;
    cnn  four 3x3 convolutions with GELU (32, 32, 64 and 64 channels, the last two with stride 2), the spatial mean,
         a linear map (nonlinear features at every pixel before anything is pooled).

Both: L1 loss on the MOS, AdamW (learning rate 2e-3, weight decay 0.01), batches of 32 drawn with replacement,
each batch flipped left-right with probability 1/2 and turned by a random quarter turn (the quickstart's
augmentation), `--steps` steps, one thread. Pixels are scaled to (x / 255 - 0.45) / 0.27. Neither model sees the
grade prompts or the AGQG head: this measures what the image side can learn, not the quickstart's model.

    python training/quickstart.py --output_dir /tmp/jpeg_only --synthetic_distortions jpeg    # its data, ~2 min
    python benchmarks/crop_learnability.py /tmp/jpeg_only/synthetic_data --seeds 0 1
    python benchmarks/crop_learnability.py runs/quickstart/synthetic_data --seeds 0 1         # every distortion
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

PIXEL_MEAN, PIXEL_STD = 0.45, 0.27


def quickstart_vit_shapes() -> dict[str, int]:
    """The quickstart's tiny CLIP shapes (`tiny_*` options of quickstart.yaml) as `tiny_clip_config` keywords."""
    from training.options import check_options, read_yaml_options

    return check_options(read_yaml_options("quickstart.yaml"), "quickstart.yaml").model.tiny_clip_shapes()


class _ViTRegressor(nn.Module):
    def __init__(self, image_size: int, patch_size: int | None) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_clip_config

        shapes = {**quickstart_vit_shapes(), "image_size": image_size}
        if patch_size is not None:
            shapes["patch_size"] = patch_size
        config = tiny_clip_config(clip_character_tokenizer(), **shapes).vision_config
        self.tower = CLIPVisionModel(config)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.out(self.tower(pixel_values=pixels).pooler_output).squeeze(-1)


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


def load_crops(folder: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels (N, 3, S, S) scaled as the module docstring says, MOS (N,)) of one split of a synthetic folder."""
    import datasets

    data = datasets.load_from_disk(folder)[split]
    pixels = np.stack([np.asarray(image.convert("RGB")) for image in data["image"]]).astype(np.float32)
    pixels = (pixels / 255.0 - PIXEL_MEAN) / PIXEL_STD
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), torch.tensor(data["mos"], dtype=torch.float32)


def _predict(model: nn.Module, pixels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(pixels[i : i + 512]) for i in range(0, len(pixels), 512)]).numpy()


def train_and_test(
    kind: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    seed: int,
    patch_size: int | None = None,
) -> dict[str, float]:
    """Trains one regressor (`vit` or `cnn`) as the module docstring says (`patch_size`: the ViT's, None for the
    quickstart's); returns its parameter count, seconds and the Spearman correlation of prediction and MOS on the
    training and the test crops."""
    torch.manual_seed(seed)
    model = _ViTRegressor(train[0].shape[-1], patch_size) if kind == "vit" else _cnn_regressor()
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
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds,
        "train": float(spearmanr(_predict(model, train[0]), train[1])[0]),
        "test": float(spearmanr(_predict(model, test[0]), test[1])[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a synthetic dataset folder (a quickstart run's synthetic_data)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", choices=("vit", "cnn"), default=["vit", "cnn"])
    parser.add_argument("--patch_size", type=int, default=None, help="the ViT's patch size (default: the quickstart's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = load_crops(args.data, "train"), load_crops(args.data, "test")
    print(f"{args.data}: {len(train[0])} training and {len(test[0])} test crops of {train[0].shape[-1]} px")
    print(f"  {'model':<5} {'seed':>4} {'params':>8} {'seconds':>8}  {'train SRCC':>10}  {'test SRCC':>9}")
    for kind in args.models:
        for seed in args.seeds:
            result = train_and_test(kind, train, test, args.steps, seed, args.patch_size)
            print(
                f"  {kind:<5} {seed:4d} {result['parameters']:8d} {result['seconds']:8.0f}  "
                f"{result['train']:10.3f}  {result['test']:9.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Gradient ascent on an image's pixels with AGQG's score as the objective: `model.score_pixels` as a loss.

    python examples/quality_ascent.py                                   # offline: a tiny random AGQG, a generated image
    python examples/quality_ascent.py --model my-agqg --image render.png --steps 30 --out ascended.png

The pixels are parametrised as sigmoid(u) so they stay in [0, 1]; Adam maximises the predicted score
(loss = -score). With a trained model this shows which pixel changes the model reads as "better" (and how easily
a differentiable quality model is gamed: add a penalty keeping the image close to the original when you use it
as a reward). The same objective serves as a reward for fine-tuning a generator (docs/differentiable.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_model(backbone: str = "clip", seed: int = 0) -> Any:
    """A tiny randomly initialised AGQG model (32-pixel views), offline."""
    from modeling_agqg import AGQGForImageQualityAssessment
    from modeling_agqg.tools.offline import clip_character_tokenizer, tiny_backbone

    tokenizer = clip_character_tokenizer()
    torch.manual_seed(seed)
    return AGQGForImageQualityAssessment.from_backbone(tiny_backbone(backbone, tokenizer), tokenizer=tokenizer)


def generated_image(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random RGB image in [0, 1], (1, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(height // 8, 2), max(width // 8, 2), generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def ascend(
    model: Any, pixels: torch.Tensor, steps: int = 30, learning_rate: float = 0.05, prompt: str | None = None
) -> tuple[torch.Tensor, list[float]]:
    """Maximises `model.score_pixels(pixels).score` over the pixels.

    Args:
        model: An `AGQGForImageQualityAssessment` (its weights are not changed).
        pixels: (B, 3, H, W) in [0, 1].
        steps: Adam steps.
        learning_rate: Adam's learning rate on u, pixels = sigmoid(u).
        prompt: Optional generation prompt (alignment-aware grading).

    Returns:
        (the final pixels (B, 3, H, W) in [0, 1], the mean score before each step and after the last).
    """
    model.eval().requires_grad_(False)
    eps = 1e-4
    logits = torch.logit(pixels.detach().clamp(eps, 1 - eps)).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=learning_rate)
    history = []
    for _ in range(steps):
        score = model.score_pixels(torch.sigmoid(logits), prompt=prompt).score
        history.append(float(score.detach().mean()))
        optimizer.zero_grad()
        (-score.sum()).backward()
        optimizer.step()
    with torch.no_grad():
        final = torch.sigmoid(logits)
        history.append(float(model.score_pixels(final, prompt=prompt).score.mean()))
    return final.detach(), history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="AGQG folder or Hub id (default: a tiny random model, offline)")
    parser.add_argument("--backbone", default="clip", help="tiny model's backbone: clip, siglip or siglip2")
    parser.add_argument("--image", help="image file (default: a generated 48x64 image)")
    parser.add_argument("--prompt", help="generation prompt for alignment-aware grading")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", help="write the ascended image here (PNG)")
    args = parser.parse_args(argv)

    if args.model:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
    else:
        model = tiny_model(args.backbone)
    if args.image:
        from modeling_agqg import load_image_file

        image = load_image_file(args.image)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(image.height, image.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255
    else:
        pixels = generated_image()
    final, history = ascend(model, pixels, steps=args.steps, learning_rate=args.lr, prompt=args.prompt)
    for step in range(0, len(history), 5):
        print(f"step {step:3d}  score {history[step]:.4f}")
    print(
        f"score {history[0]:.4f} -> {history[-1]:.4f} after {args.steps} steps "
        f"(mean |pixel change| {float((final - pixels).abs().mean()) * 255:.1f}/255)"
    )
    if args.out:
        from PIL import Image

        array = (final[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

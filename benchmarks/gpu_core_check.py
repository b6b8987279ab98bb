"""GPU check of the core model (run on a machine with CUDA; CI never runs it).

Builds a randomly initialised CLIP ViT-B/16-shaped AGQG model, saves it, reloads it through
`AutoModel.from_pretrained(..., trust_remote_code=True, dtype=...)` on the GPU and through
`pipeline("image-quality", device=0)`, and checks that fp16 and bf16 scores stay close to fp32 on
the grade scale. Prints one JSON line per check.

    PYTHONPATH=. python benchmarks/gpu_core_check.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import torch
from PIL import Image
from transformers import AutoModel, CLIPConfig, pipeline

from modeling_agqg.tools.offline import clip_character_tokenizer, random_agqg_model


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    device = os.environ.get("AGQG_CHECK_DEVICE", "cuda")  # "cpu" dry-runs the script's logic
    repeats = 8 if device == "cuda" else 1
    assert device != "cuda" or torch.cuda.is_available(), "this check needs a GPU"
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    torch.manual_seed(0)
    tokenizer = clip_character_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"patch_size": 16},
    )
    model = random_agqg_model(config, tokenizer=tokenizer, seed=0, score_range=(0.0, 5.0))
    folder = tempfile.mkdtemp()
    model.save_pretrained(folder)
    images = []
    for index in range(16):
        path = os.path.join(folder, f"image_{index}.png")
        Image.fromarray((torch.rand(256, 256, 3) * 255).to(torch.uint8).numpy()).save(path)
        images.append(path)
    pixels = model.image_processor(images=[Image.open(p) for p in images], return_tensors="pt")["pixel_values"]

    scores = {}
    for name, dtype in [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)]:
        loaded = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=dtype).to(device).eval()
        with torch.no_grad():
            out = loaded(pixels.to(device))
            _synchronize(device)
            batch = pixels.repeat(repeats, 1, 1, 1).to(device)
            start = time.perf_counter()
            for _ in range(5):
                loaded(batch)
            _synchronize(device)
            images_per_s = 5 * len(batch) / (time.perf_counter() - start)
        scores[name] = out.score.float().cpu()
        grade_error = ((scores[name] - scores["fp32"]).abs().max() / 5.0 * 4.0).item()
        print(
            json.dumps(
                {
                    "check": "auto_model",
                    "dtype": name,
                    "device": device_name,
                    "max_abs_grade_error_vs_fp32": grade_error,
                    "images_per_s": round(images_per_s, 1),
                    "prob_sum_error": (out.grade_probs.sum(-1) - 1).abs().max().item(),
                }
            )
        )
        assert grade_error < 0.05, (name, grade_error)

    pipe = pipeline("image-quality", model=folder, trust_remote_code=True, device=device, dtype=torch.float16)
    results = pipe(images, batch_size=8)
    pipe_error = max(abs(r["score"] - s) for r, s in zip(results, scores["fp32"].tolist(), strict=True)) / 5.0 * 4.0
    print(
        json.dumps(
            {
                "check": "pipeline_fp16",
                "max_abs_grade_error_vs_fp32": pipe_error,
                "model_device": str(pipe.model.device),
                "model_dtype": str(pipe.model.dtype),
            }
        )
    )
    assert pipe_error < 0.05
    print(json.dumps({"check": "done", "ok": True}))


if __name__ == "__main__":
    main()

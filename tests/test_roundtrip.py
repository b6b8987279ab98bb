"""Save, then load in a fresh offline process that never imports `modeling_agqg`:
`AutoModel` + `AutoImageProcessor` + `pipeline("image-quality")` must give the in-process scores.

CI also runs this file against the newest transformers 4.x."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model

from modeling_agqg import load_image_file

FRESH_PROCESS = r"""
import json, sys
import torch
from transformers import AutoImageProcessor, AutoModel, pipeline

folder, images = sys.argv[1], json.loads(sys.argv[2])
assert "modeling_agqg" not in sys.modules
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained(folder)
from PIL import Image
pixels = processor(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
with torch.no_grad():
    auto_scores = model(pixel_values=pixels).score.tolist()
pipe = pipeline("image-quality", model=folder, trust_remote_code=True)
results = pipe(images, batch_size=2)
single = pipe(images[0])
prompted = pipe({"image": images[0], "prompt": "a red car"})
leaked = [name for name in sys.modules if name.split(".")[0] == "modeling_agqg"]
assert not leaked, leaked
print(json.dumps({"auto": auto_scores, "pipeline": results, "single": single, "prompted": prompted,
                  "model_class": type(model).__name__, "processor": type(processor).__name__}))
"""


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


# AGQG_CROSS_PYTHON names another environment's interpreter (CI: transformers 4.x beside 5.x), so a
# folder saved by one major version is also loaded by the other.
LOADERS = [sys.executable] + ([os.environ["AGQG_CROSS_PYTHON"]] if os.environ.get("AGQG_CROSS_PYTHON") else [])


@pytest.mark.parametrize("python", LOADERS, ids=["same-env", "cross-env"][: len(LOADERS)])
@pytest.mark.parametrize("grading", ["agqg", "softmax"])
def test_fresh_process_scores_match(tokenizer, tmp_path: Path, grading: str, python: str) -> None:
    model = make_tiny_model(tokenizer, grading=grading, score_range=(0.0, 4.5))
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    images = []
    for index, color in enumerate([(200, 30, 30), (10, 10, 10), (240, 240, 240)]):
        path = tmp_path / f"image_{index}.png"
        pattern = torch.rand(48, 40, 3) * 60 + torch.tensor(color) * 0.7
        from PIL import Image

        Image.fromarray(pattern.clamp(0, 255).to(torch.uint8).numpy()).save(path)
        images.append(str(path))

    pixels = model.image_processor(images=[load_image_file(p) for p in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixels).score.tolist()
        tokens = model.tokenize_alignment_prompts(tokenizer, ["a red car"])
        expected_prompted = model(pixels[:1], **tokens).score.item()

    # Run from an empty folder so the repository's package cannot be imported by accident.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [python, "-c", FRESH_PROCESS, str(folder), json.dumps(images)],
        cwd=workdir,
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["model_class"] == "AGQGForImageQualityAssessment"
    assert got["auto"] == pytest.approx(expected, abs=1e-5)
    assert [r["score"] for r in got["pipeline"]] == pytest.approx(expected, abs=1e-5)
    assert got["single"]["score"] == pytest.approx(expected[0], abs=1e-5)
    assert got["prompted"]["score"] == pytest.approx(expected_prompted, abs=1e-5)
    first = got["pipeline"][0]
    assert set(first) == {"score", "grade", "grade_probs", "ability"}
    assert list(first["grade_probs"]) == model.config.grade_names
    assert first["grade"] == max(first["grade_probs"], key=first["grade_probs"].get)
    assert sum(first["grade_probs"].values()) == pytest.approx(1.0, abs=1e-5)

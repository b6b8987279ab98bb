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
from conftest import BACKBONES, make_tiny_model

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
@pytest.mark.parametrize("backbone", BACKBONES)
def test_fresh_process_scores_match(tokenizer, tmp_path: Path, grading: str, python: str, backbone: str) -> None:
    model = make_tiny_model(tokenizer, backbone=backbone, grading=grading, score_range=(0.0, 4.5))
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
    expected_processor = {
        "clip": "CLIPImageProcessor",
        "siglip": "SiglipImageProcessor",
        "siglip2": "SiglipImageProcessor",
        "align": "EfficientNetImageProcessor",
    }
    assert got["processor"].removesuffix("Pil").removesuffix("Fast") == expected_processor[backbone]
    assert got["auto"] == pytest.approx(expected, abs=1e-5)
    assert [r["score"] for r in got["pipeline"]] == pytest.approx(expected, abs=1e-5)
    assert got["single"]["score"] == pytest.approx(expected[0], abs=1e-5)
    assert got["prompted"]["score"] == pytest.approx(expected_prompted, abs=1e-5)
    first = got["pipeline"][0]
    assert set(first) == {"score", "grade", "grade_probs", "ability", "grade_std", "grade_entropy"}
    assert list(first["grade_probs"]) == model.config.grade_names
    assert first["grade"] == max(first["grade_probs"], key=first["grade_probs"].get)
    assert sum(first["grade_probs"].values()) == pytest.approx(1.0, abs=1e-5)


FRESH_DTYPES = r"""
import json, sys
import torch
import transformers
from transformers import AutoModel, pipeline

folder, image = sys.argv[1], sys.argv[2]
key = "torch_dtype" if transformers.__version__.startswith("4.") else "dtype"
results = {}
for name in ("float32", "bfloat16", "float16"):
    dtype = getattr(torch, name)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True, **{key: dtype}).eval()
    kinds = sorted({str(p.dtype) for p in model.parameters()})
    with torch.no_grad():
        auto = model(pixel_values=torch.zeros(1, 3, 32, 32)).score.item()
    pipe = pipeline("image-quality", model=folder, trust_remote_code=True, **{key: dtype})
    results[name] = {"kinds": kinds, "auto": auto, "pipeline": pipe(image)["score"]}
mapped = AutoModel.from_pretrained(folder, trust_remote_code=True, device_map="cpu").to("cpu")
with torch.no_grad():
    results["device_map"] = mapped(pixel_values=torch.zeros(1, 3, 32, 32)).score.item()
print(json.dumps(results))
"""


def _local_clip_folder(tokenizer, folder: Path) -> Path:
    from transformers import CLIPModel

    from modeling_agqg.tools.offline import tiny_clip_config

    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("python", LOADERS, ids=["same-env", "cross-env"][: len(LOADERS)])
@pytest.mark.parametrize(
    "made_by", ["from_clip(folder)", "from_clip(CLIPModel)", "from_backbone(siglip)", "from_backbone(siglip2)"]
)
def test_every_documented_dtype_loads_and_scores(tokenizer, tmp_path: Path, made_by: str, python: str) -> None:
    """`from_pretrained(..., dtype=bf16/fp16/fp32)` and `device_map` on folders made every way: a CLIP loaded from
    a folder once kept its own float32 in the nested config, so the towers stayed float32 beside a bfloat16
    head and the forward failed."""
    from PIL import Image

    from modeling_agqg import AGQGForImageQualityAssessment

    if made_by == "from_clip(folder)":
        model = AGQGForImageQualityAssessment.from_clip(_local_clip_folder(tokenizer, tmp_path / "clip"))
    elif made_by.startswith("from_backbone"):
        backbone = made_by[len("from_backbone(") : -1]
        if backbone == "siglip2" and not hasattr(__import__("transformers"), "Siglip2Model"):
            pytest.skip("no Siglip2Model in this transformers")
        model = make_tiny_model(tokenizer, backbone=backbone)
    else:
        model = make_tiny_model(tokenizer)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    image = tmp_path / "x.png"
    Image.fromarray((torch.rand(40, 52, 3) * 255).to(torch.uint8).numpy()).save(image)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [python, "-c", FRESH_DTYPES, str(folder), str(image)],
        cwd=workdir,
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    grade_unit = (model.config.score_range[1] - model.config.score_range[0]) / (model.config.num_grades - 1)
    for name in ("float32", "bfloat16", "float16"):
        assert got[name]["kinds"] == [f"torch.{name}"], got[name]
        assert abs(got[name]["auto"] - got["float32"]["auto"]) < 0.05 * grade_unit
        assert abs(got[name]["pipeline"] - got["float32"]["pipeline"]) < 0.05 * grade_unit
    assert got["device_map"] == pytest.approx(got["float32"]["auto"], abs=1e-6)


LEGACY_FOLDER = Path(__file__).resolve().parent / "fixtures" / "agqg_main_clip_coop"

FRESH_LEGACY = r"""
import json, sys
import torch
from transformers import AutoModel, pipeline

folder, image = sys.argv[1], sys.argv[2]
y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
pixels = (torch.stack([torch.stack([x, y, x * y]), torch.stack([1 - x, (3 * y) % 1, x**2])]) - 0.5) / 0.25
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    scores = model(pixel_values=pixels).score.tolist()
result = pipeline("image-quality", model=folder, trust_remote_code=True)(image)
print(json.dumps({"scores": scores, "pipeline": result}))
"""


@pytest.mark.parametrize("python", LOADERS, ids=["same-env", "cross-env"][: len(LOADERS)])
def test_a_folder_saved_by_main_and_resaved_loads_in_a_fresh_process(tmp_path: Path, python: str) -> None:
    """The fixture folder saved by main before backbones existed loads as it is (its own code) and, re-saved by
    the new class (`backbone_config`, the new remote code), scoring the same."""
    from PIL import Image

    from modeling_agqg import AGQGForImageQualityAssessment

    expected = json.loads((LEGACY_FOLDER / "expected_scores.json").read_text())
    AGQGForImageQualityAssessment.from_pretrained(LEGACY_FOLDER).save_pretrained(tmp_path / "resaved")
    image = tmp_path / "x.png"
    Image.fromarray((torch.rand(40, 52, 3) * 255).to(torch.uint8).numpy()).save(image)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    results = {}
    for name, folder in (("legacy", LEGACY_FOLDER), ("resaved", tmp_path / "resaved")):
        result = subprocess.run(
            [python, "-c", FRESH_LEGACY, str(folder), str(image)],
            cwd=workdir,
            env=_fresh_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        results[name] = json.loads(result.stdout.strip().splitlines()[-1])
        assert results[name]["scores"] == pytest.approx(expected["score"], abs=1e-5), name
    assert results["resaved"]["pipeline"]["score"] == pytest.approx(results["legacy"]["pipeline"]["score"], abs=1e-5)
    assert "grade_std" in results["resaved"]["pipeline"] and "grade_std" not in results["legacy"]["pipeline"]

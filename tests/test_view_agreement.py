"""One view protocol: the pipeline, `score()`, `agqg score` and the evaluation script (training/evaluation.py) give
the same scores for the same model and image (fp32, 1e-4 on the grade scale), for every view scheme, on awkward
images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from PIL import Image

PROTOCOLS = {
    "resize": "resize",
    "crops": {"scheme": "crops", "num_crops": 3, "train_crops": 1, "include_resized": True},
    "ipce": {"scheme": "ipce", "num_crops": 4, "train_crops": 2, "short_side": 48, "stride": 8, "large_stride": 12},
}
TOLERANCE = 1e-4


def _awkward_images(folder: Path) -> list[Path]:
    """Odd sizes, greyscale, RGBA, an EXIF-rotated JPEG and a 16-bit PNG."""
    rng = np.random.default_rng(7)
    paths = []

    def save(name: str, image: Image.Image, **kwargs) -> None:
        path = folder / name
        image.save(path, **kwargs)
        paths.append(path)

    save("odd.png", Image.fromarray(rng.integers(0, 255, (53, 37, 3), dtype=np.uint8)))
    save("wide.png", Image.fromarray(rng.integers(0, 255, (21, 90, 3), dtype=np.uint8)))
    save("grey.png", Image.fromarray(rng.integers(0, 255, (40, 44), dtype=np.uint8), mode="L"))
    save("rgba.png", Image.fromarray(rng.integers(0, 255, (45, 33, 4), dtype=np.uint8), mode="RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    save("rotated.jpg", Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)), exif=exif, quality=90)
    save("deep.png", Image.fromarray(rng.integers(0, 65535, (36, 36), dtype=np.uint16)))
    return paths


@pytest.mark.parametrize("scheme", sorted(PROTOCOLS))
def test_pipeline_score_and_cli_agree(tokenizer, tmp_path: Path, scheme: str) -> None:
    from transformers import pipeline

    from modeling_agqg.tools.cli import main
    from modeling_agqg.tools.scoring import score

    model_dir = tmp_path / "model"
    make_tiny_model(tokenizer, view_protocol=PROTOCOLS[scheme]).save_pretrained(model_dir)
    images = tmp_path / "images"
    images.mkdir()
    paths = _awkward_images(images)

    scorer = pipeline("image-quality", model=str(model_dir), trust_remote_code=True)
    from_pipeline = [scorer(str(path))["score"] for path in paths]
    from_api = [row["score"] for row in score(paths, model=str(model_dir), dtype="fp32", device="cpu")]
    out = tmp_path / "scores.csv"
    code = main(["score", *map(str, paths), "--model", str(model_dir), "--out", str(out), "--dtype", "fp32"])
    assert code == 0
    with out.open(newline="") as handle:
        from_cli = {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
    from_cli_list = [from_cli[str(path)] for path in paths]

    assert np.allclose(from_pipeline, from_api, atol=TOLERANCE, rtol=0), (from_pipeline, from_api)
    assert np.allclose(from_pipeline, from_cli_list, atol=TOLERANCE, rtol=0), (from_pipeline, from_cli_list)
    batched = [r["score"] for r in scorer([str(p) for p in paths], batch_size=4)]
    assert np.allclose(from_pipeline, batched, atol=TOLERANCE, rtol=0)
    # The model's protocol is what ran: overriding it changes the scores of a multi-view model.
    if scheme != "resize":
        resized = [scorer(str(path), views="resize")["score"] for path in paths]
        assert not np.allclose(resized, from_pipeline, atol=TOLERANCE)


@pytest.mark.parametrize("scheme", sorted(PROTOCOLS))
def test_evaluation_script_agrees_with_the_pipeline(tokenizer, tmp_path: Path, scheme: str) -> None:
    """`training/evaluation.py` (the evaluation training uses) scores the same awkward images as the pipeline:
    its per-image predictions CSV equals `pipeline("image-quality")` within 1e-4 (fp32), for every scheme."""
    from transformers import pipeline

    from training.evaluation import main

    model_dir = tmp_path / "model"
    make_tiny_model(tokenizer, view_protocol=PROTOCOLS[scheme]).save_pretrained(model_dir)
    root = tmp_path / "AGIQA-3K"
    (root / "images").mkdir(parents=True)
    paths = _awkward_images(root / "images")
    rows = "".join(f"{path.name},a photo,,,,{2.0 + 0.3 * i},0.5,3.0,0.5\n" for i, path in enumerate(paths))
    (root / "data.csv").write_text(
        "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n" + rows, encoding="utf-8"
    )
    (root / "splits" / "1").mkdir(parents=True)
    listed = "name\n" + "".join(f"{path.name}\n" for path in paths)
    (root / "splits" / "1" / "train.csv").write_text(listed, encoding="utf-8")
    (root / "splits" / "1" / "val.csv").write_text(listed, encoding="utf-8")
    out = tmp_path / "eval"
    args = ["--model", str(model_dir), "--dataset", "agiqa-3k", "--data_root", str(root), "--split", "1"]
    assert main([*args, "--which", "validation", "--batch_size", "4", "--output_dir", str(out)]) == 0
    with (out / "predictions_validation.csv").open(newline="") as handle:
        from_script = {row["name"]: float(row["prediction"]) for row in csv.DictReader(handle)}
    scorer = pipeline("image-quality", model=str(model_dir), trust_remote_code=True)
    from_pipeline = {path.name: scorer(str(path))["score"] for path in paths}
    assert from_script.keys() == from_pipeline.keys()
    for name, value in from_pipeline.items():
        assert abs(from_script[name] - value) <= TOLERANCE, (name, from_script[name], value)

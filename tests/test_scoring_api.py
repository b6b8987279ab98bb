"""`modeling_agqg.tools.scoring.score` (the notebook API), dtype selection and bf16 accuracy, multi-crop averaging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from PIL import Image

from modeling_agqg.tools.explain import explain
from modeling_agqg.tools.scoring import cpu_has_native_bf16, resolve_dtype, score
from modeling_agqg.views_agqg import ImageLoadError


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (30 + 3 * i, 50, 3), dtype=np.uint8)) for i in range(count)]


def _direct_scores(model, images: list[Image.Image]) -> torch.Tensor:
    """The model on the image processor's own output, fp32: what `score` must reproduce."""
    pixels = model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels).score


def test_score_matches_the_model_on_processor_output(tiny_model, tmp_path: Path) -> None:
    images = _images(7)
    paths = []
    for index, image in enumerate(images[:3]):
        paths.append(tmp_path / f"{index}.png")
        image.save(paths[-1])
    inputs = [*paths, *images[3:], tmp_path / "missing.jpg"]
    results = score(inputs, model=tiny_model, batch_size=3, dtype="fp32", device="cpu")
    assert [r["path"] for r in results] == [str(p) for p in paths] + [f"<image {i}>" for i in range(3, 7)] + [
        str(tmp_path / "missing.jpg")
    ]
    expected = _direct_scores(tiny_model, images)
    assert np.allclose([r["score"] for r in results[:7]], expected.numpy(), atol=1e-5)
    assert "not found" in results[7]["error"] and "score" not in results[7]
    for row in results[:7]:
        probs = [row[f"prob_{g}"] for g in tiny_model.config.grade_names]
        assert abs(sum(probs) - 1) < 1e-5 and row["grade"] == tiny_model.config.grade_names[int(np.argmax(probs))]

    frame = score(images[:2], model=tiny_model, dtype="fp32", as_dataframe=True)
    assert list(frame.columns)[:3] == ["path", "score", "grade"] and len(frame) == 2
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        score([tmp_path / "missing.jpg"], model=tiny_model, on_error="raise")
    with pytest.raises(ValueError, match="prompts"):
        score(images[:2], model=tiny_model, prompts=["one"])


def test_score_loads_a_saved_folder_and_folders_expand(tiny_model, tmp_path: Path) -> None:
    tiny_model.save_pretrained(tmp_path / "model")
    folder = tmp_path / "images"
    folder.mkdir()
    images = _images(4, seed=1)
    for index, image in enumerate(images):
        image.save(folder / f"{index}.png")
    results = score(folder, model=str(tmp_path / "model"), dtype="fp32")
    by_name = {Path(r["path"]).name: r["score"] for r in results}
    assert sorted(by_name) == ["0.png", "1.png", "2.png", "3.png"]
    expected = _direct_scores(tiny_model, images)
    assert np.allclose([by_name[f"{i}.png"] for i in range(4)], expected.numpy(), atol=1e-5)


def test_bf16_scores_stay_within_a_hundredth_of_a_grade(tiny_model) -> None:
    images = _images(16, seed=2)
    fp32 = score(images, model=tiny_model, dtype="fp32")
    bf16 = score(images, model=tiny_model, dtype="bf16")
    low, high = tiny_model.config.score_range
    grade_unit = (high - low) / (tiny_model.config.num_grades - 1)
    differences = np.abs(np.array([r["score"] for r in fp32]) - np.array([r["score"] for r in bf16])) / grade_unit
    assert differences.max() < 0.01, differences
    assert differences.max() > 0  # bf16 really ran: the numbers are not the fp32 ones


def test_dtype_auto_follows_the_hardware() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) == torch.float32
    assert resolve_dtype("fp16", cpu) == torch.float16
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " amx_bf16" in flags or " avx512_bf16" in flags:
        assert cpu_has_native_bf16()


def test_crops_shorthand_is_the_crops_view_protocol(tokenizer) -> None:
    from modeling_agqg.views_agqg import make_views

    model = make_tiny_model(tokenizer)
    image = _images(1, seed=3)[0].resize((80, 64))
    one = score([image], model=model, dtype="fp32", crops=0)[0]
    many = score([image], model=model, dtype="fp32", crops=3)[0]
    assert many == score([image], model=model, dtype="fp32", views="crops:3")[0]
    views = make_views(image, model.view_protocol("crops:3"), model.pixel_spec())
    with torch.no_grad():
        output = model(pixel_values=views)  # one forward per view, no combination
    assert abs(one["score"] - float(output.score[-1])) < 1e-5  # the resized view is the last one
    assert abs(many["score"] - float(output.score.mean())) < 1e-5
    probs = output.grade_probs.mean(0)
    assert np.allclose([many[f"prob_{g}"] for g in model.config.grade_names], probs.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        score([image], model=model, views="resize", crops=2)


def test_prompts_condition_the_scores(tiny_model) -> None:
    images = _images(2, seed=4)
    plain = score(images, model=tiny_model, dtype="fp32")
    prompted = score(images, model=tiny_model, dtype="fp32", prompts=["a red fox", "a city at night"])
    tokens = tiny_model.tokenize_alignment_prompts(tiny_model.tokenizer, ["a red fox", "a city at night"])
    pixels = tiny_model.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = tiny_model(pixel_values=pixels, **tokens).score
    assert np.allclose([r["score"] for r in prompted], expected.numpy(), atol=1e-5)
    assert not np.allclose([r["score"] for r in prompted], [r["score"] for r in plain])


def test_explain_reports_ordered_thresholds(tiny_model, tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    _images(1)[0].save(path)
    result = explain(str(path), tiny_model)
    assert result["difficulties"] == sorted(result["difficulties"]) and len(result["difficulties"]) == 4
    assert result["discrimination"] > 0
    assert abs(sum(result["grade_probs"].values()) - 1) < 1e-5
    # One dtype rule and default for both (auto): the same number as score().
    assert abs(result["score"] - score([path], model=tiny_model)[0]["score"]) < 1e-5
    assert (
        abs(
            explain(str(path), tiny_model, dtype="fp32")["score"]
            - score([path], model=tiny_model, dtype="fp32")[0]["score"]
        )
        < 1e-5
    )


def test_score_is_exported_at_the_package_top_level() -> None:
    import modeling_agqg

    assert modeling_agqg.score is score


@pytest.mark.slow
def test_compile_gives_the_eager_scores(tiny_model) -> None:
    """`score(..., compile=True)` (`agqg score --compile`): the compiled vision tower scores like the eager one."""
    images = _images(3, seed=6)
    eager = [r["score"] for r in score(images, model=tiny_model, dtype="fp32")]
    compiled = [r["score"] for r in score(images, model=tiny_model, dtype="fp32", compile=True)]
    assert getattr(tiny_model.clip.vision_model, "_compiled_call_impl", None) is not None
    assert np.allclose(eager, compiled, atol=1e-4)

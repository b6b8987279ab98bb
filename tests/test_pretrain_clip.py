"""The offline pretrained-CLIP stand-in (training/pretrain_clip.py): pairs, captions, loss, folder, cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training import pretrain_clip as pc
from training.synthetic import Q_PRISTINE, Q_WORST, available_source_photos

TINY = {
    "image_size": 8,
    "patch_size": 2,
    "hidden_size": 16,
    "projection_dim": 16,
    "crops_per_photo": 1,
    "combined_per_crop": 1,
    "steps": 3,
    "batch_size": 8,
    "images_per_crop": 4,
    "evaluate": False,
    "disable_tqdm": True,
}


class _GuardedPhotos(dict):
    """The real photos, but reading a held-out one's pixels fails the test."""

    def __getitem__(self, name: str) -> np.ndarray:
        if name in pc.HELD_OUT_PHOTOS:
            raise AssertionError(f"pretraining read the held-out photo {name!r}")
        return super().__getitem__(name)

    def get(self, name: str, default: object = None) -> object:
        return self[name] if name in self else default

    def values(self):  # noqa: ANN201 - a dict view
        raise AssertionError("pretraining iterated over every photo's pixels")

    def items(self):  # noqa: ANN201
        raise AssertionError("pretraining iterated over every photo's pixels")


@pytest.fixture(scope="module")
def pairs() -> pc.PretrainingPairs:
    return pc.build_pretraining_pairs(
        image_size=8,
        crops_per_photo=2,
        random_native_crops=0,
        combined_per_crop=2,
        photos=_GuardedPhotos(available_source_photos()),
    )


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pc.build_pretrained_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", **TINY)


def test_held_out_photos_never_enter_pretraining(pairs: pc.PretrainingPairs) -> None:
    photos = set(available_source_photos())
    assert set(pc.HELD_OUT_PHOTOS) <= photos
    assert set(pairs.sources) == photos - set(pc.HELD_OUT_PHOTOS)
    per_crop = 1 + 5 * 4 + 2
    assert len(pairs) == len(pairs.images) == len(pairs.quality) == len(set(pairs.sources)) * 2 * per_crop
    assert pairs.images.shape[1:] == (8, 8, 3) and pairs.images.dtype == np.uint8
    assert np.array_equal(np.bincount(pairs.crop_ids), np.full(len(set(pairs.sources)) * 2, per_crop))
    # Other held-out lists are honoured too.
    other = pc.build_pretraining_pairs(
        image_size=8, crops_per_photo=1, random_native_crops=1, combined_per_crop=0, held_out_photos=["rocket"]
    )
    assert "rocket" not in other.sources and "astronaut" in other.sources


def test_pairs_record_what_was_applied_and_its_measured_quality(pairs: pc.PretrainingPairs) -> None:
    pristine = [i for i, applied in enumerate(pairs.applied) if not applied]
    assert np.allclose(pairs.quality[pristine], Q_PRISTINE)
    assert (pairs.quality >= Q_WORST - 1e-9).all() and (pairs.quality <= Q_PRISTINE + 1e-9).all()
    combined = [applied for applied in pairs.applied if len(applied) == 2]
    assert combined and all(a[0][0] != a[1][0] for a in combined)
    # Within a crop and a distortion, a stronger level never measures better.
    for crop in np.unique(pairs.crop_ids):
        rows = np.flatnonzero(pairs.crop_ids == crop)
        for kind in pc.DISTORTION_WORDS:
            levels = [pairs.quality[i] for i in rows if len(pairs.applied[i]) == 1 and pairs.applied[i][0][0] == kind]
            assert np.all(np.diff(levels) < 0)


def test_captions_name_the_degradation_its_strength_and_the_quality_words() -> None:
    rng = np.random.default_rng(0)
    caption = pc.caption_for("rocket", (("blur", 3), ("noise", 1)), 2.0, rng, "distortion")
    assert "heavily blurred" in caption and "slightly noisy" in caption and "a rocket" in caption
    for _ in range(10):
        caption = pc.caption_for("rocket", (), Q_PRISTINE, rng, "distortion")
        assert any(f"{word} photo" in caption or f", {word}." in caption for word in pc.PRISTINE_WORDS), caption
    for kind, word in pc.DISTORTION_WORDS.items():
        for level, strength in pc.STRENGTH_WORDS.items():
            assert f"{strength} {word}" in pc.caption_for("coffee", ((kind, level),), 3.0, rng, "combined")

    # The binary words follow the measured quality: always "good" when pristine, always "bad" at the worst.
    def binary_words(quality: float) -> set[str]:
        captions = [pc.caption_for("coffee", (), quality, rng, "binary").lower() for _ in range(50)]
        return {word for caption in captions for word in ("good", "bad") if word in caption.split()}

    assert binary_words(Q_PRISTINE) == {"good"} and binary_words(Q_WORST) == {"bad"}
    # Every host's grade prompt is itself a caption (words from simulated ratings of the quality).
    drawn = {pc.caption_for("rocket", (), q, rng) for q in np.linspace(Q_WORST, Q_PRISTINE, 40) for _ in range(200)}
    assert {"Bad photo.", "Good photo."} <= drawn
    assert {f"a photo with {grade} quality." for grade in pc.GRADE_WORDS} <= drawn
    assert {f"{grade} quality." for grade in pc.GRADE_WORDS} <= drawn
    assert {f"a photo that {adverb} matches 'rocket'" for adverb in pc.ALIGNMENT_WORDS} <= drawn
    with pytest.raises(ValueError, match="unknown caption family"):
        pc.caption_for("rocket", (), 3.0, rng, "poetry")


def test_every_caption_fits_clip_77_tokens(tokenizer) -> None:
    rng = np.random.default_rng(1)
    longest = max(pc.STRENGTH_WORDS.values(), key=len)
    level = next(k for k, v in pc.STRENGTH_WORDS.items() if v == longest)
    kinds = sorted(pc.DISTORTION_WORDS, key=lambda k: -len(pc.DISTORTION_WORDS[k]))[:2]
    applied = ((kinds[0], level), (kinds[1], level))
    for source in pc.PHOTO_CONTENT:
        for family in pc.CAPTION_FAMILIES:
            for _ in range(20):
                caption = pc.caption_for(source, applied, 3.0, rng, family)
                assert len(tokenizer(caption)["input_ids"]) <= pc.MAX_TOKENS, caption


def test_contrastive_loss_is_clip_loss_for_distinct_captions_and_multi_positive_otherwise() -> None:
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    tau = torch.tensor(10.0)
    logits = tau * images @ texts.t()
    clip = 0.5 * (
        torch.nn.functional.cross_entropy(logits, torch.arange(4))
        + torch.nn.functional.cross_entropy(logits.t(), torch.arange(4))
    )
    assert torch.allclose(pc.contrastive_loss(images, texts, torch.arange(4), tau), clip)
    # Images 0 and 2 share caption 0: caption 0's image-side term averages over both positives.
    index = torch.tensor([0, 1, 0, 2])
    logits = tau * images @ texts[:3].t()
    log_p = logits.t().log_softmax(-1)
    expected = 0.5 * (
        torch.nn.functional.cross_entropy(logits, index)
        - ((log_p[0, 0] + log_p[0, 2]) / 2 + log_p[1, 1] + log_p[2, 3]) / 3
    )
    assert torch.allclose(pc.contrastive_loss(images, texts[:3], index, tau), expected)


def test_grouped_batches_take_several_images_of_each_crop(pairs: pc.PretrainingPairs) -> None:
    sampler = pc.GroupedBatchSampler(pairs.crop_ids, 16, 4, np.random.default_rng(0))
    for _ in range(5):
        batch = sampler.next_batch()
        assert len(batch) == 16 and len(set(batch.tolist())) == 16
        groups = pairs.crop_ids[batch].reshape(4, 4)
        assert (groups == groups[:, :1]).all()
    uniform = pc.GroupedBatchSampler(pairs.crop_ids, 16, 1, np.random.default_rng(0))
    assert len(uniform.next_batch()) == 16
    with pytest.raises(ValueError, match="multiple"):
        pc.GroupedBatchSampler(pairs.crop_ids, 10, 4, np.random.default_rng(0))


def test_folder_loads_as_a_clip_checkpoint_everywhere(tiny_folder: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPModel

    from modeling_agqg import AGQGForImageQualityAssessment

    assert {"config.json", "model.safetensors", "preprocessor_config.json", pc.PRETRAINING_FILE} <= {
        p.name for p in tiny_folder.iterdir()
    }
    clip = CLIPModel.from_pretrained(tiny_folder, local_files_only=True)
    assert isinstance(AutoModel.from_pretrained(tiny_folder, local_files_only=True), CLIPModel)
    assert (
        AutoTokenizer.from_pretrained(tiny_folder)("Bad photo.")["input_ids"][0] == clip.config.text_config.bos_token_id
    )
    processor = AutoImageProcessor.from_pretrained(tiny_folder)
    image = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    processed = processor(images=[image], return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    assert torch.allclose(processed, pc.pixel_values_of(image[None]), atol=1e-5)  # what pretraining fed the tower

    model = AGQGForImageQualityAssessment.from_clip(
        tiny_folder, grading="softmax", grade_prompt_sets=[["Bad photo."], ["Good photo."]], grade_names=["bad", "good"]
    )
    assert torch.equal(model.clip.logit_scale, clip.logit_scale)
    out = model(pixel_values=processed)
    assert out.grade_probs.shape == (1, 2) and torch.isfinite(out.score).all()
    record = json.loads((tiny_folder / pc.PRETRAINING_FILE).read_text())
    assert record["arguments"]["held_out_photos"] == sorted(pc.HELD_OUT_PHOTOS)
    assert not set(record["statistics"]["photos"]) & set(pc.HELD_OUT_PHOTOS)


def test_same_seed_same_weights_other_seed_other_weights(tiny_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    again = pc.build_pretrained_clip(tmp_path / "again", **TINY)
    other = pc.build_pretrained_clip(tmp_path / "other", seed=1, **TINY)
    reference = load_file(tiny_folder / "model.safetensors")
    same = load_file(again / "model.safetensors")
    assert all(torch.equal(reference[k], same[k]) for k in reference)
    different = load_file(other / "model.safetensors")
    assert any(not torch.equal(reference[k], different[k]) for k in reference)


def test_complete_folder_is_reused_other_arguments_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pc.build_pretrained_clip(tmp_path / "clip", **TINY)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    def no_pretraining(*args: object, **kwargs: object) -> None:
        raise AssertionError("pretrained again although the folder was complete")

    with monkeypatch.context() as patched:
        patched.setattr(pc, "pretrain", no_pretraining)
        assert pc.build_pretrained_clip(tmp_path / "clip", **TINY) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    rebuilt = pc.build_pretrained_clip(tmp_path / "clip", **{**TINY, "steps": 2})
    assert json.loads((rebuilt / pc.PRETRAINING_FILE).read_text())["arguments"]["steps"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folders left

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        pc.build_pretrained_clip(tmp_path / "foreign", **TINY)
    with pytest.raises(TypeError, match="unknown pretraining options"):
        pc.build_pretrained_clip(tmp_path / "x", stepz=3)


def test_command_line_and_zero_shot_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--output_dir", str(tmp_path / "cli")]
    for key, value in {**TINY, "evaluate": True}.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    assert pc.main(argv) == 0
    record = json.loads((tmp_path / "cli" / pc.PRETRAINING_FILE).read_text())
    report = record["zero_shot"]
    assert report["photos"] == sorted(pc.HELD_OUT_PHOTOS)
    assert set(report["hosts"]) == set(pc.ZERO_SHOT_PROMPTS)
    for result in [*report["hosts"].values(), report["linear_probe"]]:
        assert {"srcc", "plcc", "per_distortion", "per_photo"} <= set(result)
        assert set(result["per_photo"]) == set(pc.HELD_OUT_PHOTOS)
    assert "zero-shot clip-iqa" in capsys.readouterr().out


def test_synthetic_dataset_can_fix_the_held_out_photos_as_test() -> None:
    from training.synthetic import build_synthetic_dataset

    splits = build_synthetic_dataset(image_size=8, crops_per_source=1, seed=3, test_sources=pc.HELD_OUT_PHOTOS)
    assert set(splits["test"]["source"]) == set(pc.HELD_OUT_PHOTOS)
    assert not set(splits["train"]["source"]) & set(pc.HELD_OUT_PHOTOS)
    assert not set(splits["validation"]["source"]) & set(pc.HELD_OUT_PHOTOS)
    with pytest.raises(ValueError, match="test_sources"):
        build_synthetic_dataset(image_size=8, crops_per_source=1, test_sources=["no_such_photo"])

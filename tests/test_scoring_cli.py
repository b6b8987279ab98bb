"""`agqg score` / `agqg explain` end to end: the console script in subprocesses, broken files, resume after
kill -9, output formats, list files, saved datasets and a two-process `accelerate launch` run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from PIL import Image

from modeling_agqg.tools.cli import main

AGQG = shutil.which("agqg") or str(Path(sys.executable).with_name("agqg"))


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        sub = folder / ("nested" if index % 4 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (40 + index % 7, 48, 3), dtype=np.uint8)
        path = sub / f"img{index:04d}.{'png' if index % 5 == 0 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _add_broken_files(folder: Path, good: Path) -> list[Path]:
    """A non-image with an image name, a truncated JPEG, an empty file and an unreadable file."""
    not_image = folder / "notes.jpg"
    not_image.write_text("this is text, not a JPEG")
    truncated = folder / "truncated.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    broken = [not_image, truncated, empty]
    if os.geteuid() != 0:  # root can read anything: the permission case only exists for other users
        unreadable = folder / "unreadable.jpg"
        shutil.copy(good, unreadable)
        unreadable.chmod(0)
        broken.append(unreadable)
    return broken


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modeling_agqg.tools.offline import clip_character_tokenizer

    folder = tmp_path_factory.mktemp("model")
    make_tiny_model(clip_character_tokenizer()).save_pretrained(folder)
    return folder


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_broken_files_are_listed_and_exit_code_says_so(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    good = _make_images(images, 9)
    broken = _add_broken_files(images, good[1])
    out = tmp_path / "scores.csv"
    code = main(["score", str(images), "--model", str(model_dir), "--out", str(out), "--batch-size", "4", "--quiet"])
    assert code == 3
    rows = _read_csv(out)
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in good)
    assert list(rows[0]) == [
        "path",
        "score",
        "grade",
        "prob_bad",
        "prob_poor",
        "prob_fair",
        "prob_good",
        "prob_perfect",
        "ability",
    ]
    for row in rows:
        probs = [float(row[f"prob_{g}"]) for g in ("bad", "poor", "fair", "good", "perfect")]
        assert abs(sum(probs) - 1) < 1e-5
        assert 1.0 <= float(row["score"]) <= 5.0
        assert row["grade"] == ["bad", "poor", "fair", "good", "perfect"][int(np.argmax(probs))]
    errors = _read_csv(tmp_path / "scores.csv.errors.csv")
    assert sorted(e["path"] for e in errors) == sorted(str(p) for p in broken)
    reasons = {Path(e["path"]).name: e["reason"] for e in errors}
    assert "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]

    # A clean folder exits 0; --on-error fail stops at the first broken file with exit code 1.
    clean = tmp_path / "clean"
    _make_images(clean, 3)
    assert main(["score", str(clean), "--model", str(model_dir), "--out", str(tmp_path / "c.csv"), "--quiet"]) == 0
    failing = ["score", str(images), "--model", str(model_dir), "--out", str(tmp_path / "f.csv"), "--on-error", "fail"]
    assert main([*failing, "--quiet"]) == 1


def test_missing_input_is_a_usage_error(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["score", str(tmp_path / "nope"), "--model", str(model_dir), "--out", str(tmp_path / "o.csv")])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_formats_lists_and_datasets(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    good = _make_images(images, 6)
    base = ["--model", str(model_dir), "--batch-size", "4", "--quiet", "--dtype", "fp32"]
    assert main(["score", str(images), "--out", str(tmp_path / "a.csv"), *base]) == 0
    assert main(["score", str(images), "--out", str(tmp_path / "a.jsonl"), *base]) == 0
    assert main(["score", str(images), "--out", str(tmp_path / "a.parquet"), *base]) == 0
    import pandas as pd

    from_csv = pd.read_csv(tmp_path / "a.csv")
    from_jsonl = pd.read_json(tmp_path / "a.jsonl", lines=True)
    from_parquet = pd.read_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(from_csv, from_jsonl)
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert not (tmp_path / "a.parquet.partial.jsonl").exists()

    # A CSV list with relative paths, a prompt column and an empty row; a glob; a txt list.
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "prompt"])
        for path in good[:3]:
            writer.writerow([os.path.relpath(path, tmp_path), "a cat, on a mat"])
        writer.writerow(["", "no image"])
    code = main(["score", str(listing), "--prompt-column", "prompt", "--out", str(tmp_path / "l.csv"), *base])
    assert code == 3
    assert [row["path"] for row in _read_csv(tmp_path / "l.csv")] == [str(p) for p in good[:3]]
    assert "empty" in _read_csv(tmp_path / "l.csv.errors.csv")[0]["reason"]
    # The prompt changes the scores (alignment grading re-encodes the K prompts per image).
    plain = {row["path"]: row["score"] for row in _read_csv(tmp_path / "a.csv")}
    assert any(plain[row["path"]] != row["score"] for row in _read_csv(tmp_path / "l.csv"))

    assert main(["score", str(images / "*.jpg"), "--out", str(tmp_path / "g.csv"), *base]) == 0
    assert sorted(r["path"] for r in _read_csv(tmp_path / "g.csv")) == sorted(
        str(p) for p in good if p.parent == images and p.suffix == ".jpg"
    )

    # A saved dataset with an Image column, as the loaders write it.
    import datasets

    table = datasets.Dataset.from_dict({"image": [str(p) for p in good[:4]], "mos": [1.0, 2.0, 3.0, 4.0]})
    table = table.cast_column("image", datasets.Image())
    table.save_to_disk(str(tmp_path / "saved"))
    assert main(["score", str(tmp_path / "saved"), "--out", str(tmp_path / "d.csv"), *base]) == 0
    rows = _read_csv(tmp_path / "d.csv")
    assert [r["path"] for r in rows] == [f"{tmp_path / 'saved'}#{i}" for i in range(4)]
    # Same images, other batch mates: equal up to float32 rounding of differently shaped matrix products.
    assert np.allclose([float(r["score"]) for r in rows], [float(plain[str(p)]) for p in good[:4]], atol=1e-5)


@pytest.mark.slow
def test_console_script_resumes_after_kill_9(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    good = _make_images(images, 300)
    broken = _add_broken_files(images, good[0])
    command = [AGQG, "score", str(images), "--model", str(model_dir), "--batch-size", "4", "--workers", "1"]
    env = _env(tmp_path)

    reference = tmp_path / "reference.csv"
    done = subprocess.run([*command, "--out", str(reference)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "scored 300 images" in done.stderr and f"skipped {len(broken)}" in done.stderr

    out = tmp_path / "resumed.csv"
    process = subprocess.Popen([*command, "--out", str(out)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") > 40:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed: make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    lines_at_kill = out.read_bytes().count(b"\n")
    assert 1 < lines_at_kill < 301

    resumed = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 3, resumed.stderr
    assert "already done" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert (tmp_path / "resumed.csv.errors.csv").read_bytes() == (tmp_path / "reference.csv.errors.csv").read_bytes()

    # A torn last line (a kill in the middle of a write) is dropped and rewritten.
    data = reference.read_bytes()
    torn = tmp_path / "torn.csv"
    torn.write_bytes(data[: data.rfind(b"\n", 0, len(data) // 2) + 25])
    shutil.copy(tmp_path / "reference.csv.errors.csv", tmp_path / "torn.csv.errors.csv")
    again = subprocess.run([*command, "--out", str(torn)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 3, again.stderr
    assert torn.read_bytes() == data


@pytest.mark.slow
def test_explain_prints_and_plots(tmp_path: Path, model_dir: Path) -> None:
    image = _make_images(tmp_path / "images", 1)[0]
    plot = tmp_path / "explain.png"
    done = subprocess.run(
        [AGQG, "explain", str(image), "--model", str(model_dir), "--plot", str(plot)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ability theta" in done.stdout and "b1=" in done.stdout and "perfect" in done.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(plot) as png:
        assert png.size[0] > 300


@pytest.mark.slow
def test_accelerate_two_processes_merge_exactly_once(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    good = _make_images(images, 23)
    broken = _add_broken_files(images, good[0])
    env = _env(tmp_path)
    single = tmp_path / "single.jsonl"
    base = ["--model", str(model_dir), "--batch-size", "4", "--workers", "0", "--dtype", "fp32", "--device", "cpu"]
    done = subprocess.run(
        [AGQG, "score", str(images), "--out", str(single), *base], env=env, capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr

    out = tmp_path / "multi.jsonl"
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
    ]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    script = ["-m", "modeling_agqg", "score", str(images), "--out", str(out), *base]
    done = subprocess.run([*launcher, *script], env=env, capture_output=True, text=True, timeout=300)
    assert out.exists(), done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(good) and len({r["path"] for r in rows}) == len(good)
    # Same rows, same order, same numbers as one process: the chunks are the same, only their process differs.
    assert out.read_text() == single.read_text()
    errors = _read_csv(tmp_path / "multi.jsonl.errors.csv")
    assert sorted(e["path"] for e in errors) == sorted(str(p) for p in broken)
    assert not list(tmp_path.glob("*.part*-of-*"))
    assert "scored 23 images" in done.stderr


def test_agiqa3k_list_with_prompts(tmp_path: Path, model_dir: Path, shared_data: Path) -> None:
    """The official AGIQA-3K data.csv (CRLF, quoted prompts) as a list: the 8 shipped images are scored with
    their generation prompts, every other row is listed as missing, and a resumed run adds nothing."""
    data_csv = shared_data / "AGIQA-3K" / "data.csv"
    images = shared_data / "AGIQA-3K" / "images"
    out = tmp_path / "agiqa.csv"
    command = ["score", str(data_csv), "--root", str(images), "--prompt-column", "prompt", "--out", str(out)]
    command += ["--model", str(model_dir), "--batch-size", "64", "--quiet", "--dtype", "fp32"]
    assert main(command) == 3
    rows = _read_csv(out)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in images.glob("*.jpg"))
    errors = _read_csv(tmp_path / "agiqa.csv.errors.csv")
    with open(data_csv, newline="", encoding="utf-8") as handle:
        total = sum(1 for _ in csv.DictReader(handle))
    assert len(rows) + len(errors) == total == 2982
    assert all("not found" in e["reason"] for e in errors)
    before = out.read_bytes()
    assert main(command) == 3  # resumed: everything is done already
    assert out.read_bytes() == before

"""Reliability and safety of the scoring side (issue 12), end to end through the public entry points: `agqg score`
and `agqg explain` (`modeling_agqg.tools.cli.main` and the console script), `score()`, `explain()`, `load_model` and
`pipeline("image-quality")`.

Hostile inputs (decompression bombs, extreme shapes, URLs), torn output files at every byte, full disks, wrong
models, Hub revisions, progress bars, help defaults and file permissions."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import transformers
from conftest import make_tiny_model
from PIL import Image

from modeling_agqg.tools.cli import main

AGQG = shutil.which("agqg") or str(Path(sys.executable).with_name("agqg"))
GRADES = ("bad", "poor", "fair", "good", "perfect")
# File names a shell user can make: a newline, a quote and a comma (CSV quoting), and non-ASCII letters.
AWKWARD_NAMES = ('new\nline "quoted", café.png', 'zz "last"\n,\n.png')


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------------------------


def write_png_bomb(path: Path, width: int, height: int) -> None:
    """A 1-bit black PNG of width x height written in a stream: a file of ~100 KB that decodes to billions of
    pixels, made without ever holding them (PIL would need the whole image in memory to save it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_piece = 1000
    pieces = [compressor.compress(row * rows_per_piece) for _ in range(height // rows_per_piece)]
    pieces += [compressor.compress(row * (height % rows_per_piece)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(pieces)) + chunk(b"IEND", b"")
    )


def write_strip(path: Path, width: int, height: int) -> None:
    """A random RGB PNG of an extreme aspect ratio (e.g. 40000x2: 240 KB)."""
    rng = np.random.default_rng(width + height)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def make_images(folder: Path, count: int, seed: int = 0, names: tuple[str, ...] = ()) -> list[Path]:
    """`count` small random images (JPEG and PNG), then one PNG per name in `names`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"img{i:03d}.{'png' if i % 3 == 0 else 'jpg'}" for i in range(count)]
    paths += [folder / name for name in names]
    for index, path in enumerate(paths):
        Image.fromarray(rng.integers(0, 255, (36 + index % 5, 44, 3), dtype=np.uint8)).save(path, format="PNG")
    return paths


def truncated_jpeg(path: Path) -> None:
    full = path.with_name("full_for_truncation.tmp")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "JPEG")
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def error_lines(text: str, command: str = "score") -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"agqg {command}: error:")]


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("TQDM_DISABLE", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modeling_agqg.tools.offline import clip_character_tokenizer

    folder = tmp_path_factory.mktemp("model")
    make_tiny_model(clip_character_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_dir: Path):
    from modeling_agqg import AGQGForImageQualityAssessment

    return AGQGForImageQualityAssessment.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def pipe(model):
    from transformers import pipeline

    return pipeline("image-quality", model=model, image_processor=model.image_processor, tokenizer=model.tokenizer)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    write_png_bomb(path, 30000, 30000)
    assert path.stat().st_size < 200_000
    return path


# ---------------------------------------------------------------------------------------------
# 1. Decompression bombs
# ---------------------------------------------------------------------------------------------


def test_bomb_in_a_folder_is_one_error_row_and_the_run_goes_on(
    tmp_path: Path, model_dir: Path, bomb: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "images"
    good = make_images(images, 5)
    shutil.copy(bomb, images / "bomb.png")
    out = tmp_path / "scores.csv"
    command = ["score", str(images), "--model", str(model_dir), "--out", str(out), "--batch-size", "2", "--quiet"]
    assert main(command) == 3
    assert sorted(r["path"] for r in read_csv(out)) == sorted(map(str, good))
    errors = read_csv(tmp_path / "scores.csv.errors.csv")
    assert [e["path"] for e in errors] == [str(images / "bomb.png")]
    assert "decompression bomb" in errors[0]["reason"]
    # The rerun does not trip on the same file: everything is done, nothing is added.
    before = out.read_bytes(), (tmp_path / "scores.csv.errors.csv").read_bytes()
    assert main(command) == 3
    assert (out.read_bytes(), (tmp_path / "scores.csv.errors.csv").read_bytes()) == before
    assert "Traceback" not in capsys.readouterr().err


def test_score_api_skips_a_bomb_and_keeps_every_other_result(model, tmp_path: Path, bomb: Path) -> None:
    from modeling_agqg import score

    good = make_images(tmp_path, 3)
    rows = score([good[0], bomb, good[1], good[2]], model=model, batch_size=4, on_error="skip")
    assert [r["path"] for r in rows] == [str(good[0]), str(bomb), str(good[1]), str(good[2])]
    assert "decompression bomb" in rows[1]["error"] and "score" not in rows[1]
    assert all(1.0 <= r["score"] <= 5.0 for r in rows[:1] + rows[2:])


def test_pipeline_and_explain_refuse_a_bomb_with_a_clear_message(
    pipe, model_dir: Path, bomb: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg import ImageLoadError

    with pytest.raises(ImageLoadError, match=r"bomb\.png: decompression bomb"):
        pipe(str(bomb))
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        pipe([str(bomb)], batch_size=2)
    assert main(["explain", str(bomb), "--model", str(model_dir), "--no-plot"]) == 2
    captured = capsys.readouterr()
    assert len(error_lines(captured.err, "explain")) == 1 and "decompression bomb" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


# ---------------------------------------------------------------------------------------------
# 2. Extreme shapes and the done-means folder: bounded memory end to end
# ---------------------------------------------------------------------------------------------

PEAK_RSS_LIMIT_MB = 2048


def _run_measuring_peak_rss(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Runs `command` from a fresh interpreter and returns (result, peak RSS in MB of the largest process it
    started): RUSAGE_CHILDREN of a wrapper that ran nothing else."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'rc': done.returncode, 'stderr': done.stderr, 'stdout': done.stdout, 'peak_mb': peak}))\n"
    )
    outer = subprocess.run(
        [sys.executable, "-c", wrapper, json.dumps(command)], env=env, capture_output=True, text=True, timeout=600
    )
    report = json.loads(outer.stdout)
    result = subprocess.CompletedProcess(command, report["rc"], report["stdout"], report["stderr"])
    return result, report["peak_mb"]


@pytest.mark.slow
def test_mixed_folder_scores_every_good_image_once_in_bounded_memory(
    tmp_path: Path, model_dir: Path, bomb: Path
) -> None:
    """The issue's done-means: good images mixed with a decompression bomb, an image over the pixel budget, a
    40000x2 strip, a zero-byte file and a truncated JPEG. Exit 3, every good image once, the bad ones listed with
    their reason, peak memory under 2 GB. The strip is scored, bounded: its resized view comes from the window the
    centre crop keeps (docs/scoring.md)."""
    images = tmp_path / "images"
    good = make_images(images, 10)
    shutil.copy(bomb, images / "bomb.png")
    write_png_bomb(images / "over_budget.png", 10000, 10000)  # 100 Mpx: under PIL's bomb limit, over the budget
    write_strip(images / "strip.png", 40000, 2)
    (images / "empty.jpg").write_bytes(b"")
    truncated_jpeg(images / "truncated.jpg")
    out = tmp_path / "scores.csv"
    command = [AGQG, "score", str(images), "--model", str(model_dir), "--out", str(out), "--batch-size", "4"]
    # --workers 0: every image is decoded in the one process measured, so its peak is the run's whole footprint.
    done, peak_mb = _run_measuring_peak_rss([*command, "--workers", "0", "--quiet"], subprocess_env(tmp_path))
    assert done.returncode == 3, done.stderr
    rows = read_csv(out)
    scored = [r["path"] for r in rows]
    assert sorted(scored) == sorted(map(str, [*good, images / "strip.png"])) and len(set(scored)) == len(scored)
    reasons = {Path(e["path"]).name: e["reason"] for e in read_csv(tmp_path / "scores.csv.errors.csv")}
    assert sorted(reasons) == ["bomb.png", "empty.jpg", "over_budget.png", "truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "pixel budget" in reasons["over_budget.png"] and "AGQG_MAX_IMAGE_PIXELS" in reasons["over_budget.png"]
    assert "truncated" in reasons["truncated.jpg"] and "not an image" in reasons["empty.jpg"]
    print(f"peak RSS of agqg score on the mixed folder: {peak_mb:.0f} MB")
    assert peak_mb < PEAK_RSS_LIMIT_MB, peak_mb


@pytest.mark.slow
def test_extreme_strips_through_the_pipeline_and_score_stay_bounded(tmp_path: Path, model_dir: Path) -> None:
    """A 20000x4 PNG once took 2.8 GB through the pipeline and `score()`, a 40000x2 one 10.2 GB in `agqg score`."""
    write_strip(tmp_path / "wide.png", 20000, 4)
    write_strip(tmp_path / "tall.png", 2, 40000)
    code = (
        "import resource, sys\n"
        "from transformers import pipeline\n"
        "from modeling_agqg import score\n"
        "model_dir, wide, tall = sys.argv[1:]\n"
        "pipe = pipeline('image-quality', model=model_dir, trust_remote_code=True)\n"
        "results = [pipe(wide)['score'], pipe(tall)['score']]\n"
        "results += [row['score'] for row in score([wide, tall], model=model_dir)]\n"
        "assert all(1.0 <= value <= 5.0 for value in results), results\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    arguments = [str(model_dir), str(tmp_path / "wide.png"), str(tmp_path / "tall.png")]
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mb = float(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS of pipeline + score() on 20000x4 and 2x40000 strips: {peak_mb:.0f} MB")
    assert peak_mb < PEAK_RSS_LIMIT_MB, peak_mb


# ---------------------------------------------------------------------------------------------
# 3. Resuming after a torn write, at every byte of the last row
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def awkward_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three good images, an unreadable file, and last the awkward names: a good image and a broken file, so the
    last row of the output and of the errors file both hold a quoted name with newlines, quotes and commas."""
    folder = tmp_path_factory.mktemp("awkward")
    good = make_images(folder, 3, names=(AWKWARD_NAMES[0],))
    (folder / "not an image.png").write_text("text")
    broken = folder / AWKWARD_NAMES[1]
    broken.write_text("not a PNG either")
    return [str(p) for p in [*good[:3], folder / "not an image.png", good[3], broken]]


def _score_command(inputs: list[str], model_dir: Path, out: Path) -> list[str]:
    return ["score", *inputs, "--model", str(model_dir), "--out", str(out), "--batch-size", "2", "--workers", "0"]


def _last_record_start(data: bytes, fmt: str) -> int:
    """Byte offset where the last record of a complete CSV or JSON Lines file starts."""
    if fmt == "jsonl":
        return data.rfind(b"\n", 0, len(data) - 1) + 1
    starts, in_quotes = [0], False
    for index, byte in enumerate(data[:-1]):
        if byte == ord('"'):
            in_quotes = not in_quotes
        elif byte == ord("\n") and not in_quotes:
            starts.append(index + 1)
    return starts[-1]


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory: pytest.TempPathFactory, awkward_inputs: list[str], model_dir: Path) -> Path:
    """Uninterrupted runs into CSV, JSON Lines and Parquet."""
    folder = tmp_path_factory.mktemp("reference")
    for name in ("ref.csv", "ref.jsonl", "ref.parquet"):
        assert main([*_score_command(awkward_inputs, model_dir, folder / name), "--quiet"]) == 3
    return folder


def test_torn_tables_reopen_to_whole_records_at_every_byte(tmp_path: Path) -> None:
    """The writer alone, at every byte of a whole file (fast): reopening a torn CSV or JSON Lines table keeps
    exactly the records written whole before the cut, and appending the missing ones gives every row once."""
    from modeling_agqg.tools.writers import ERROR_COLUMNS, AppendOnlyTable

    keys = ["plain.png", *AWKWARD_NAMES, 'a,"b"\r\n.png', "x" * 3 + "\n" * 3 + '"', "last.png"]
    rows = [{"path": key, "reason": f'reason {i}, with a comma and a "quote"'} for i, key in enumerate(keys)]
    for fmt in ("csv", "jsonl"):
        full = AppendOnlyTable(str(tmp_path / f"full.{fmt}"), ERROR_COLUMNS, fmt)
        boundaries = []
        for row in rows:
            full.append([row])
            boundaries.append(os.path.getsize(full.path))
        full.close()
        data = Path(full.path).read_bytes()
        for cut in range(len(data) + 1):
            path = tmp_path / f"torn.{fmt}"
            path.write_bytes(data[:cut])
            table = AppendOnlyTable(str(path), ERROR_COLUMNS, fmt)
            whole = sum(1 for end in boundaries if end <= cut)
            assert table.done_keys() == set(keys[:whole]), (fmt, cut)
            table.append([row for row in rows if row["path"] not in table.done_keys()])
            table.close()
            assert list(table.iter_rows()) == rows, (fmt, cut)
            assert path.read_bytes() == data, (fmt, cut)


@pytest.mark.slow
@pytest.mark.parametrize(("torn", "stride"), [("csv", 1), ("errors", 1), ("jsonl", 3), ("parquet-partial", 3)])
def test_a_tail_torn_at_any_byte_resumes_to_every_image_exactly_once(
    torn: str, stride: int, tmp_path: Path, awkward_inputs: list[str], model_dir: Path, reference_runs: Path
) -> None:
    """A kill or a full disk can cut the last row at any byte, also right after a newline inside a quoted file
    name. For every cut, `agqg score` rerun must give the uninterrupted run's file, byte for byte (every image
    once). CSV outputs and errors files at every byte of the last row; JSON lines (Parquet's partial file too),
    whose only boundary is the newline, at every third byte (a run costs ~0.2 s)."""
    import pandas as pd

    fmt = {"csv": "csv", "jsonl": "jsonl", "parquet-partial": "parquet", "errors": "csv"}[torn]
    reference = reference_runs / f"ref.{fmt}"
    reference_errors = reference_runs / f"ref.{fmt}.errors.csv"
    # The file that is torn: the output itself, Parquet's partial JSON lines, or the errors file.
    source = {"csv": reference, "jsonl": reference, "parquet-partial": reference_runs / "ref.jsonl"}.get(
        torn, reference_errors
    )
    data = source.read_bytes()
    record_format = "jsonl" if torn in ("jsonl", "parquet-partial") else "csv"
    start = _last_record_start(data, record_format)
    name = AWKWARD_NAMES[1 if torn == "errors" else 0]
    # The last record holds the awkward name (CSV: quoted with its raw newlines; JSON: escaped).
    assert (
        json.dumps(name, ensure_ascii=False)[1:-1] if record_format == "jsonl" else name.replace('"', '""')
    ).encode() in data[start:]
    out = tmp_path / f"out.{fmt}"
    errors = tmp_path / f"out.{fmt}.errors.csv"
    torn_path = {"csv": out, "jsonl": out, "parquet-partial": tmp_path / "out.parquet.partial.jsonl"}.get(torn, errors)
    cuts = sorted({*range(start, len(data) + 1, stride), len(data) - 1, len(data)})
    for cut in cuts:
        for path in tmp_path.glob("out.*"):
            path.unlink()
        torn_path.write_bytes(data[:cut])
        if torn == "errors":
            shutil.copy(reference, out)
        else:
            shutil.copy(reference_errors, errors)
        assert main([*_score_command(awkward_inputs, model_dir, out), "--quiet"]) == 3, cut
        if fmt == "parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))
            assert not (tmp_path / "out.parquet.partial.jsonl").exists()
        else:
            assert out.read_bytes() == reference.read_bytes(), cut
        assert errors.read_bytes() == reference_errors.read_bytes(), cut
    frame = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt](out)
    assert list(frame["path"]) == [*awkward_inputs[:3], awkward_inputs[4]]  # pandas agrees: every image once


def test_parquet_rows_in_both_the_final_file_and_a_leftover_partial_are_written_once(
    tmp_path: Path, awkward_inputs: list[str], model_dir: Path, reference_runs: Path
) -> None:
    """A run killed after the Parquet file replaced the old one but before the partial file was removed."""
    import pandas as pd

    out = tmp_path / "out.parquet"
    shutil.copy(reference_runs / "ref.parquet", out)
    shutil.copy(reference_runs / "ref.parquet.errors.csv", tmp_path / "out.parquet.errors.csv")
    shutil.copy(reference_runs / "ref.jsonl", tmp_path / "out.parquet.partial.jsonl")  # the same rows
    assert main([*_score_command(awkward_inputs, model_dir, out), "--quiet"]) == 3
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference_runs / "ref.parquet"))


# ---------------------------------------------------------------------------------------------
# 4. --revision / revision= wherever a model is loaded
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def hub_with_two_revisions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tokenizer):
    """A test Hub holding one AGQG repository whose `main` and `v2` branches hold different models."""
    from hub_server import HubServer, use_hub_server
    from huggingface_hub import HfApi, HfFileSystem

    with HubServer() as server:
        use_hub_server(monkeypatch, server, tmp_path / "hf_home")
        api = HfApi()
        repo_id = "agqg-tester/revisions"
        api.create_repo(repo_id)
        models = {"main": make_tiny_model(tokenizer), "v2": make_tiny_model(tokenizer, score_range=(0.0, 100.0))}
        for revision, revision_model in models.items():
            folder = tmp_path / f"model-{revision}"
            revision_model.save_pretrained(folder)
            if revision != "main":
                api.create_branch(repo_id, branch=revision)
            api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision)
        yield repo_id, models
    HfFileSystem.clear_instance_cache()
    assert server.unhandled_requests == []


@pytest.mark.slow
def test_revision_selects_the_hub_branch_everywhere_a_model_is_loaded(
    hub_with_two_revisions, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg import score
    from modeling_agqg.tools.explain import explain
    from modeling_agqg.tools.scoring import load_model

    repo_id, models = hub_with_two_revisions
    image = make_images(tmp_path / "images", 1)[0]
    expected = {name: score([image], model=m, dtype="fp32")[0]["score"] for name, m in models.items()}
    assert abs(expected["main"] - expected["v2"]) > 1.0  # score ranges 1-5 and 0-100

    assert list(load_model(repo_id, revision="v2").config.score_range) == [0.0, 100.0]
    assert list(load_model(repo_id).config.score_range) == [1.0, 5.0]
    for revision in ("main", "v2"):
        assert score([image], model=repo_id, revision=revision, dtype="fp32")[0]["score"] == pytest.approx(
            expected[revision], abs=1e-4
        )
        assert explain(image, repo_id, revision=revision, dtype="fp32")["score"] == pytest.approx(
            expected[revision], abs=1e-4
        )
        out = tmp_path / f"{revision}.csv"
        command = ["score", str(image), "--model", repo_id, "--revision", revision, "--out", str(out)]
        assert main([*command, "--dtype", "fp32", "--quiet"]) == 0
        assert float(read_csv(out)[0]["score"]) == pytest.approx(expected[revision], abs=1e-4)
        capsys.readouterr()
        command = ["explain", str(image), "--model", repo_id, "--revision", revision, "--dtype", "fp32", "--no-plot"]
        assert main(command) == 0
        printed = re.search(r"score: ([0-9.]+)", capsys.readouterr().out)
        assert printed and float(printed.group(1)) == pytest.approx(expected[revision], abs=1e-4)
    # A revision the repository does not have: one line, exit 2.
    assert main(["score", str(image), "--model", repo_id, "--revision", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "no revision 'nope'" in lines[0]


def test_revision_is_passed_to_from_pretrained(monkeypatch: pytest.MonkeyPatch, model, tmp_path: Path) -> None:
    """Without a Hub: every loader hands `revision` to `AutoModel.from_pretrained`."""
    from transformers import AutoModel

    from modeling_agqg import score
    from modeling_agqg.tools.explain import explain
    from modeling_agqg.tools.scoring import load_model

    calls: list[dict] = []

    def from_pretrained(name, **kwargs):
        calls.append({"name": name, **kwargs})
        return model

    monkeypatch.setattr(AutoModel, "from_pretrained", from_pretrained)
    image = str(make_images(tmp_path, 1)[0])
    load_model("org/repo", revision="r1")
    score([image], model="org/repo", revision="r2")
    explain(image, "org/repo", revision="r3")
    assert main(["score", image, "--model", "org/repo", "--revision", "r4", "--out", str(tmp_path / "o.csv")]) == 0
    assert main(["explain", image, "--model", "org/repo", "--revision", "r5", "--no-plot"]) == 0
    assert [(c["name"], c["revision"], c["trust_remote_code"]) for c in calls] == [
        ("org/repo", f"r{i}", True) for i in range(1, 6)
    ]


# ---------------------------------------------------------------------------------------------
# 5. Wrong --model, explain, empty inputs, errors-file names, progress bars, help, dtype, pipeline, URLs,
#    file permissions, a full disk
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "explain"])
@pytest.mark.parametrize(
    ("model_arg", "expected"),
    [
        ("{tmp}/no/such/model", "no folder"),
        ("{tmp}", "is a folder but not a loadable AGQG model"),
        ("agqg-tester/not-downloaded", "unreachable in offline mode (HF_HUB_OFFLINE=1)"),
    ],
)
def test_a_wrong_model_says_what_was_tried_in_one_line(
    command: str,
    model_arg: str,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    import huggingface_hub.constants as hub_constants

    # Offline mode as a user sets it: huggingface_hub reads the variable once, at import (which may have happened
    # before the test session's own HF_HUB_OFFLINE=1), so its constant is set too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    image = make_images(tmp_path / "images", 1)[0]
    model_arg = model_arg.format(tmp=tmp_path)
    extra = ["--out", str(tmp_path / "o.csv")] if command == "score" else ["--no-plot"]
    assert main([command, str(image), "--model", model_arg, *extra]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err, command)
    assert len(lines) == 1 and expected in lines[0] and model_arg in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_an_unreachable_hub_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """No network (nothing listens at the endpoint), not offline mode: the message says the Hub is unreachable."""
    import huggingface_hub.constants as hub_constants
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}"
    )
    # huggingface_hub retries with back-off (1+2+4+8+8 s); the test does not wait for it.
    no_wait = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    no_wait.sleep = lambda seconds: None
    monkeypatch.setattr(hub_http, "time", no_wait)
    image = make_images(tmp_path / "images", 1)[0]
    command = ["score", str(image), "--model", "agqg-tester/anything", "--out", str(tmp_path / "o.csv")]
    assert main(command) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "the Hub at http://127.0.0.1:9 is unreachable" in lines[0], lines


def test_explain_takes_one_image_file(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "renders"
    make_images(folder, 2)
    assert main(["explain", str(folder), "--model", str(model_dir)]) == 2
    lines = error_lines(capsys.readouterr().err, "explain")
    assert len(lines) == 1 and "is a folder" in lines[0] and "one image file" in lines[0]
    assert main(["explain", str(tmp_path / "missing.png"), "--model", str(model_dir)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_explain_without_matplotlib_says_what_to_install_before_working(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    image = make_images(tmp_path, 1)[0]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert main(["explain", str(image), "--model", str(model_dir)]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err, "explain")
    assert len(lines) == 1 and "pip install" in lines[0] and "agqg[train]" in lines[0] and "--no-plot" in lines[0]
    assert captured.out == ""  # nothing half done: no report printed before the failure
    assert main(["explain", str(image), "--model", str(model_dir), "--no-plot"]) == 0
    assert "ability theta" in capsys.readouterr().out


@pytest.mark.slow
def test_explain_plot_goes_beside_the_image_or_to_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    image = make_images(tmp_path / "images", 1)[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["explain", str(image), "--model", str(model_dir)]) == 0
    beside = image.with_name(f"{image.stem}.agqg.png")
    assert beside.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(elsewhere.iterdir()) == []
    assert f"plot: {beside}" in capsys.readouterr().out
    target = tmp_path / "plots" / "mine.png"
    target.parent.mkdir()
    assert main(["explain", str(image), "--model", str(model_dir), "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_named_like_an_image_is_a_usage_error(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    out = tmp_path / "scores.csv"
    assert main(["score", str(folder), "--model", str(model_dir), "--out", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "is a folder with no image files" in lines[0]
    assert not out.exists()


def test_the_output_file_the_summary_names_always_exists(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every input broken: exit 3, and the output file named in the summary exists (header only)."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "empty.png").write_bytes(b"")
    for suffix in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"scores.{suffix}"
        assert main(["score", str(images), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 3
        assert out.exists() and f"-> {out}" in capsys.readouterr().err
    assert (tmp_path / "scores.csv").read_text().startswith("path,score,grade,prob_bad")
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "scores.parquet")) == 0


def test_errors_files_are_named_after_the_whole_output_name(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    make_images(images, 3)
    (images / "empty.png").write_bytes(b"")
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"c.{suffix}"
        assert main(["score", str(images), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 3
    for suffix in ("csv", "jsonl"):
        assert [e["path"] for e in read_csv(tmp_path / f"c.{suffix}.errors.csv")] == [str(images / "empty.png")]
    assert not (tmp_path / "c.errors.csv").exists()


def test_a_run_begun_with_the_old_errors_file_name_resumes_with_it(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """Runs begun before the renaming wrote `<out stem>.errors.csv`; resuming one keeps that file, so the images
    listed there are neither retried nor listed twice."""
    images = tmp_path / "images"
    make_images(images, 4)
    (images / "empty.png").write_bytes(b"")
    out = tmp_path / "c.csv"
    command = ["score", str(images), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main(command) == 3
    complete = out.read_bytes()
    # What the older version left after a kill: two rows, and its errors file under the old name.
    out.write_bytes(b"".join(complete.splitlines(keepends=True)[:3]))
    (tmp_path / "c.csv.errors.csv").rename(tmp_path / "c.errors.csv")
    capsys.readouterr()
    assert main(command) == 3
    assert "resuming with the errors file" in capsys.readouterr().err
    assert out.read_bytes() == complete
    assert [e["path"] for e in read_csv(tmp_path / "c.errors.csv")] == [str(images / "empty.png")]
    assert not (tmp_path / "c.csv.errors.csv").exists()
    # --overwrite starts afresh under the new name.
    assert main([*command, "--overwrite"]) == 3
    assert (tmp_path / "c.csv.errors.csv").exists()


@pytest.mark.parametrize("how", ["--quiet", "TQDM_DISABLE=1"])
def test_quiet_and_tqdm_disable_hide_every_bar(
    how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "images"
    make_images(images, 3)
    command = ["score", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o.csv")]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert main(command + ["--overwrite"]) == 0
    loud = capsys.readouterr().err
    # The bars this test expects to disappear (transformers 4.x shows no weight-loading bar).
    assert "img/s" in loud and ("Loading weights" in loud or transformers.__version__.startswith("4."))
    if how == "--quiet":
        command.append("--quiet")
    else:
        monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(command + ["--overwrite"]) == 0
    quiet = capsys.readouterr().err
    assert "Loading weights" not in quiet and "img/s" not in quiet and "%|" not in quiet, quiet
    assert quiet.count("\n") == 1 and "agqg score: scored 3 images" in quiet  # only the summary line


def test_console_script_quiet_shows_only_the_summary(tmp_path: Path, model_dir: Path) -> None:
    images = tmp_path / "images"
    make_images(images, 2)
    command = [AGQG, "score", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o.csv"), "--quiet"]
    done = subprocess.run(command, env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("agqg score: scored 2 images")


def _option_help(help_text: str, option: str) -> str:
    """The help entry of one option: from its line to the next option's."""
    match = re.search(rf"^  {re.escape(option)}\b.*?(?=^  -|\Z)", help_text, flags=re.MULTILINE | re.DOTALL)
    assert match, option
    return " ".join(match.group(0).split())


@pytest.mark.parametrize("command", ["score", "explain"])
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = ["--views", "--crops", "--dtype", "--revision", "--device"]
    options += ["--on-error", "--out", "--errors", "--batch-size"] if command == "score" else ["--out"]
    for option in options:
        assert "(default: " in _option_help(text, option), (option, _option_help(text, option))
    assert "(default: auto)" in _option_help(text, "--dtype")
    if command == "score":
        assert "(default: skip)" in _option_help(text, "--on-error")


def test_explain_and_score_choose_the_dtype_by_one_rule(model, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import inspect

    from modeling_agqg import score
    from modeling_agqg.tools.cli import build_parser
    from modeling_agqg.tools.explain import explain
    from modeling_agqg.tools.scoring import resolve_dtype

    defaults = {
        command: build_parser(command).parse_args([command, "x.png", "--model", "m"]).dtype
        for command in ("score", "explain")
    }
    assert defaults == {"score": "auto", "explain": "auto"}
    assert (
        inspect.signature(explain).parameters["dtype"].default == inspect.signature(score).parameters["dtype"].default
    )
    image = make_images(tmp_path, 1)[0]
    explained = explain(image, model, device="cpu")
    assert explained["score"] == pytest.approx(score([image], model=model, device="cpu")[0]["score"], abs=1e-6)
    import torch

    assert explained["dtype"] == str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")


def test_pipeline_rejects_unknown_arguments_like_transformers_pipelines(pipe, tmp_path: Path) -> None:
    image = str(make_images(tmp_path, 1)[0])
    for argument in ({"batchsize": 8}, {"top_k": 1}):
        with pytest.raises(TypeError, match=f"unexpected argument.*{next(iter(argument))}"):
            pipe(image, **argument)
    assert 1.0 <= pipe(image, batch_size=8)["score"] <= 5.0


def test_urls_are_refused_with_the_reason_everywhere(
    pipe, model, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg import ImageLoadError, score

    url = "https://example.com/render.png?size=large"
    with pytest.raises(ImageLoadError, match="URLs are not fetched"):
        pipe(url)
    rows = score([url, make_images(tmp_path, 1)[0]], model=model)
    assert "URLs are not fetched" in rows[0]["error"] and "score" in rows[1]
    assert main(["score", url, "--model", str(model_dir), "--out", str(tmp_path / "o.csv")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "URLs are not fetched" in lines[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{url}\n")
    assert main(["score", str(listing), "--model", str(model_dir), "--out", str(tmp_path / "l.csv"), "--quiet"]) == 3
    reason = "URLs are not fetched; download the image and pass its path"
    assert read_csv(tmp_path / "l.csv.errors.csv") == [{"path": url, "reason": reason}]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_saved_weights_have_the_permissions_of_the_other_files(umask: int, tokenizer, tmp_path: Path) -> None:
    model = make_tiny_model(tokenizer)
    previous = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "model").iterdir()}
    assert modes["model.safetensors"] == expected, {name: oct(mode) for name, mode in modes.items()}
    assert set(modes.values()) == {expected}, {name: oct(mode) for name, mode in modes.items()}


@pytest.mark.parametrize("which", ["results", "errors"])
def test_a_full_disk_names_the_file_and_the_rerun_completes(
    which: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from modeling_agqg.tools.writers import AppendOnlyTable

    good = make_images(tmp_path / "images", 7)
    empty = [tmp_path / "images" / "empty1.png", tmp_path / "images" / "empty2.png"]
    for path in empty:
        path.write_bytes(b"")
    # Chunks of two: [good, empty], [good, good], [empty, good], ...: the errors file is written twice too.
    inputs = [str(p) for p in [good[0], empty[0], good[1], good[2], empty[1], *good[3:]]]
    command = ["score", *inputs, "--model", str(model_dir), "--batch-size", "2", "--workers", "0", "--quiet"]
    assert main([*command, "--out", str(tmp_path / "reference.csv")]) == 3
    out = tmp_path / "scores.csv"
    target = out if which == "results" else tmp_path / "scores.csv.errors.csv"
    real_write = AppendOnlyTable._write_text
    writes = {"count": 0}

    def write_until_the_disk_is_full(self, text: str) -> None:
        if self.path == str(target):
            writes["count"] += 1
            if writes["count"] == 3:  # the header, a batch, then half a batch and the disk is full
                real_write(self, text[: len(text) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, text)

    monkeypatch.setattr(AppendOnlyTable, "_write_text", write_until_the_disk_is_full)
    capsys.readouterr()
    assert main([*command, "--out", str(out)]) == 1
    captured = capsys.readouterr().err
    lines = error_lines(captured)
    assert len(lines) == 1 and "Traceback" not in captured, captured
    assert f"cannot write {target}: No space left on device" in lines[0]
    assert "free some disk space and rerun the same command to resume" in lines[0]
    assert target.read_bytes().endswith(b"\n")  # the half-written batch was cut off again
    monkeypatch.setattr(AppendOnlyTable, "_write_text", real_write)
    assert main([*command, "--out", str(out)]) == 3
    assert out.read_bytes() == (tmp_path / "reference.csv").read_bytes()
    assert (tmp_path / "scores.csv.errors.csv").read_bytes() == (tmp_path / "reference.csv.errors.csv").read_bytes()

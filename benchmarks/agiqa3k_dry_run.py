# Copyright 2025 The agqg authors. Licensed under the Apache License, Version 2.0.
"""Full-scale dry run of the 10-split AGIQA-3K reproduction, without the AGIQA-3K images.

    python benchmarks/agiqa3k_dry_run.py --out runs/agiqa3k_dry_run                       # 2982 rows, 512 px
    python benchmarks/agiqa3k_dry_run.py --out /tmp/dry --rows 300 --size 64 --splits 1-2 --steps 4

1. `build_folder` makes an AGIQA-3K-shaped folder from the real-format fixtures (`shared/data/AGIQA-3K`, or
   `--source`): the official `data.csv` (byte for byte, CRLF and quoted prompts; with `--rows N` only its first
   N rows), IPCE's split files `splits/<n>/{train,val}.csv` (filtered to those rows) and one generated JPEG per
   row, named as `data.csv` names it, next to `data.csv` (IPCE's layout `data/AGIQA-3K/<name>`, which
   `training.data` finds as the dataset root's own image folder). The images are seeded random smooth colour
   fields with a little grain: they cost the loader what real 512 x 512 JPEGs cost, but carry no quality
   signal, so the metrics of the dry run are meaningless by construction.
2. It runs the documented 10-split command (`training/run_splits.py ... -- --config
   training/configs/agiqa3k.yaml ...`) with a tiny random CLIP (`--clip tiny`), IPCE's view protocol scaled to
   that CLIP's input size, a few optimiser steps per split and a checkpoint every few steps, and measures the
   wall time, the peak resident memory of the process tree (the sum over the process group, sampled every
   `--poll` seconds, and the largest single process from `getrusage`), the disk use of the data and output
   folders, and the load average before and after (other jobs may share the machine).
3. With `--kill-at-checkpoint SPLIT:STEP` (or `--kill-after SECONDS`) it SIGKILLs the whole process group once
   that checkpoint exists, reruns the same command, and checks from the log that the splits finished before
   the kill were skipped and that the interrupted split resumed from its newest complete checkpoint.

Writes `<out>/dry_run_report.json` and `<out>/dry_run_report.md` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modeling_agqg.views_agqg import ViewProtocol
from training.run_splits import parse_splits

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AGQG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DEFAULT_SOURCE = SHARED_DATA / "AGIQA-3K"
CONFIG = "training/configs/agiqa3k.yaml"
RUN_SPLITS = "training/run_splits.py"
FOLDER_MARKER = ".dry_run_folder.json"
REPORT_NAME = "dry_run_report"
IPCE_INPUT_SIZE = 224  # IPCE's CLIP input: the published geometry (512 / 32 / 48 / 1024) is for 224-pixel patches
JPEG_QUALITY = 90


# ---------------------------------------------------------------------------------------------
# The AGIQA-3K-shaped folder
# ---------------------------------------------------------------------------------------------


def _csv_lines(path: Path) -> list[str]:
    """The file's lines with their own line endings (`data.csv` is CRLF, the split files LF)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.readlines()


def _first_field(line: str) -> str:
    """The first CSV field of one line (the image name in `data.csv` and the split files)."""
    return next(csv.reader(io.StringIO(line)))[0]


def synthetic_image(index: int, size: int, seed: int = 0) -> Image.Image:
    """A seeded random smooth colour field (bicubic upsampling of a 2..7 cell grid) with a little grain, so
    content and JPEG size vary from image to image. Deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    cells = int(rng.integers(2, 8))
    grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.standard_normal((size, size, 1), dtype=np.float32) * float(rng.uniform(0.0, 10.0))
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def build_folder(
    out: str | Path, rows: int | None = None, size: int = 512, seed: int = 0, source: str | Path | None = None
) -> Path:
    """Makes an AGIQA-3K-shaped folder at `out` and returns it.

    Args:
        out: The folder to fill (created; existing files are overwritten).
        rows: Keep only the first `rows` rows of `data.csv` (header and line endings kept) and the split-file
            rows naming them; None keeps all 2982.
        size: Side of the generated square JPEGs (the AGIQA-3K mirror's images are 512 x 512).
        seed: Seeds the generated images.
        source: The real-format fixture folder holding `data.csv` and `splits/<n>/{train,val}.csv` (default
            `shared/data/AGIQA-3K`, or `$AGQG_SHARED_DATA/AGIQA-3K`).

    Raises:
        FileNotFoundError: The fixture folder or its `data.csv` is missing.
    """
    source = Path(source) if source is not None else DEFAULT_SOURCE
    metadata = source / "data.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata} not found (set AGQG_SHARED_DATA or pass --source)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, *body = _csv_lines(metadata)
    if rows is not None:
        if rows < 1:
            raise ValueError(f"rows={rows} must be >= 1")
        body = body[:rows]
    (out / "data.csv").write_text(header + "".join(body), encoding="utf-8", newline="")
    names = [_first_field(line) for line in body]
    kept = set(names)
    split_rows: dict[str, dict[str, int]] = {}
    for split_file in sorted((source / "splits").glob("*/*.csv")):
        split_header, *split_body = _csv_lines(split_file)
        chosen = [line for line in split_body if _first_field(line) in kept]
        target = out / "splits" / split_file.parent.name / split_file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(split_header + "".join(chosen), encoding="utf-8", newline="")
        split_rows.setdefault(split_file.parent.name, {})[split_file.stem] = len(chosen)
    for index, name in enumerate(names):
        synthetic_image(index, size, seed).save(out / name, format="JPEG", quality=JPEG_QUALITY)
    marker = {"rows": len(names), "size": size, "seed": seed, "source": str(source), "split_rows": split_rows}
    (out / FOLDER_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out


def folder_is_built(out: Path, rows: int | None, size: int, seed: int) -> bool:
    """Whether `out` already holds a folder `build_folder` made with these settings (all its images present)."""
    marker = out / FOLDER_MARKER
    if not marker.is_file():
        return False
    built = json.loads(marker.read_text(encoding="utf-8"))
    if built.get("size") != size or built.get("seed") != seed:
        return False
    names = [_first_field(line) for line in _csv_lines(out / "data.csv")[1:]]
    if rows is not None and len(names) != rows:
        return False
    if rows is None and built.get("rows") != len(_csv_lines(Path(built["source"]) / "data.csv")) - 1:
        return False
    return all((out / name).is_file() for name in names)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def scaled_ipce_protocol(input_size: int, num_crops: int = 15, train_crops: int = 8) -> dict[str, Any]:
    """IPCE's view protocol (`ViewProtocol.parse("ipce")`: short side 512, stride 32, stride 48 from 1024 px, for
    224-pixel patches) with every length scaled by `input_size / 224`, as the synthetic ablation scales it
    (docs/hosts.md); `num_crops` / `train_crops` test / training patches (IPCE: 15 and 8)."""
    published = ViewProtocol.parse("ipce").to_dict()
    scale = input_size / IPCE_INPUT_SIZE
    protocol = {"scheme": "ipce", "num_crops": num_crops, "train_crops": train_crops}
    for name in ("short_side", "stride", "large_stride", "large_side"):
        protocol[name] = max(1, round(published[name] * scale))
    return protocol


def dry_run_command(args: argparse.Namespace, data: Path, runs: Path) -> list[str]:
    """The documented 10-split command, with what a tiny CLIP on a CPU needs instead of the config's ViT-B/16
    settings (no mixed precision, no loader workers, a few steps, a checkpoint every few steps, plots on)."""
    protocol = scaled_ipce_protocol(args.tiny_image_size, args.num_crops, args.train_crops)
    return [
        sys.executable, RUN_SPLITS, "--splits", args.splits, "--output_dir", str(runs), "--",
        "--config", CONFIG,
        "--clip", "tiny",
        "--tiny_image_size", str(args.tiny_image_size),
        "--tiny_patch_size", str(args.tiny_patch_size),
        "--data_root", str(data),
        "--view_protocol", json.dumps(protocol, separators=(",", ":")),
        "--max_train_steps", str(args.steps),
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", str(args.eval_batch_size),
        "--checkpointing_steps", str(args.checkpointing_steps),
        "--checkpoints_total_limit", "2",
        "--mixed_precision", "no",
        "--num_workers", "0",
        "--plots", "true",
        "--disable_tqdm", "true",
        "--model_name", "agqg-tiny-agiqa3k-dry-run",
    ]  # fmt: skip


def child_env(threads: int) -> dict[str, str]:
    """Offline, progress bars off, the repository importable, `threads` torch threads (unless already set)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TQDM_DISABLE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    return env


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def group_rss_bytes(pgid: int) -> tuple[int, int]:
    """(summed resident memory in bytes, number of processes) of the processes in process group `pgid`,
    read from /proc (0, 0 where /proc is unavailable)."""
    total = count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid:
            total += int(fields[21]) * _PAGE_SIZE  # rss (pages): field 24 of stat
            count += 1
    return total, count


def disk_usage(path: Path) -> dict[str, int]:
    """Files, apparent bytes and allocated bytes (st_blocks) under `path`, links not followed."""
    files = apparent = allocated = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            files += 1
            apparent += stat.st_size
            allocated += getattr(stat, "st_blocks", 0) * 512
    return {"files": files, "apparent_bytes": apparent, "allocated_bytes": allocated}


def load_average() -> dict[str, Any]:
    """`os.getloadavg()` and the `uptime` line (where the command exists)."""
    line = None
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()], "uptime": line, "cpus": os.cpu_count()}


@dataclass
class Phase:
    """One run of the command: its timing, memory, exit and log."""

    name: str
    log: str
    wall_seconds: float = 0.0
    exit_code: int | None = None
    killed: bool = False
    kill_reason: str | None = None
    peak_group_rss_bytes: int = 0
    peak_group_processes: int = 0
    split_starts: dict[str, float] = field(default_factory=dict)  # split -> seconds into the phase


_COMMAND_SPLIT = re.compile(r"^\$ .*--split (\S+)")


def run_phase(
    name: str,
    command: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str],
    runs: Path,
    kill_at: tuple[str, int] | None = None,
    kill_after: float | None = None,
    poll: float = 0.25,
    echo: bool = False,
) -> Phase:
    """Runs `command` in its own process group, logging its output (stdout and stderr) to `log_path`; samples
    the group's memory every `poll` s; SIGKILLs the group once `runs/split_<S>/checkpoints/step_<N>` exists
    (`kill_at=(S, N)`) or after `kill_after` seconds."""
    phase = Phase(name=name, log=str(log_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                if echo:
                    sys.stdout.write(line)
                match = _COMMAND_SPLIT.match(line)
                if match:
                    phase.split_starts[match.group(1)] = round(time.perf_counter() - started, 2)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        trigger = runs / f"split_{kill_at[0]}" / "checkpoints" / f"step_{kill_at[1]}" if kill_at else None
        while process.poll() is None:
            rss, count = group_rss_bytes(process.pid)
            if rss > phase.peak_group_rss_bytes:
                phase.peak_group_rss_bytes, phase.peak_group_processes = rss, count
            reason = None
            if trigger is not None and trigger.is_dir():
                reason = f"checkpoint {trigger.relative_to(runs)} appeared"
            elif kill_after is not None and time.perf_counter() - started >= kill_after:
                reason = f"{kill_after} s elapsed"
            if reason:
                os.killpg(process.pid, signal.SIGKILL)
                phase.killed, phase.kill_reason = True, reason
                process.wait()
                break
            time.sleep(poll)
        phase.exit_code = process.wait()
        reader.join(timeout=30)
    phase.wall_seconds = round(time.perf_counter() - started, 2)
    return phase


# ---------------------------------------------------------------------------------------------
# What the outputs and logs say
# ---------------------------------------------------------------------------------------------


def finished_splits(runs: Path, splits: Sequence[str]) -> list[str]:
    """The splits whose final `model/eval_results.json` exists."""
    return [s for s in splits if (runs / f"split_{s}" / "model" / "eval_results.json").is_file()]


def checkpoint_steps(split_dir: Path) -> dict[str, list[int]]:
    """Complete (`step_N`) and partial (`.partial_step_N`) checkpoint steps of one split's run."""
    folder = split_dir / "checkpoints"
    complete, partial = [], []
    if folder.is_dir():
        for entry in folder.iterdir():
            if re.fullmatch(r"step_\d+", entry.name):
                complete.append(int(entry.name[len("step_") :]))
            elif re.fullmatch(r"\.partial_step_\d+", entry.name):
                partial.append(int(entry.name[len(".partial_step_") :]))
    return {"complete": sorted(complete), "partial": sorted(partial)}


def log_by_split(log_text: str) -> tuple[list[str], dict[str, str]]:
    """(splits the runner skipped as done, split -> the output of its train.py run) from a run_splits log."""
    skipped = re.findall(r"^split (\S+): already done", log_text, flags=re.MULTILINE)
    chunks: dict[str, str] = {}
    current = None
    for line in log_text.splitlines():
        match = _COMMAND_SPLIT.match(line)
        if match:
            current = match.group(1)
            chunks[current] = ""
        if current is not None:
            chunks[current] += line + "\n"
    return skipped, chunks


_RESUMED = re.compile(r"resumed from (\S+): step (\d+), epoch (\d+), batch (\d+) of (\d+)")


def resume_evidence(
    killed: Phase, state_at_kill: dict[str, Any], resumed_log: str, splits: Sequence[str]
) -> dict[str, Any]:
    """Checks the rerun after a kill: the splits finished before the kill were skipped (not retrained), the
    interrupted split resumed from its newest complete checkpoint, and the rest started from scratch."""
    skipped, chunks = log_by_split(resumed_log)
    finished = state_at_kill["finished"]
    interrupted = state_at_kill["interrupted"]
    evidence: dict[str, Any] = {
        "kill_reason": killed.kill_reason,
        "finished_before_kill": finished,
        "interrupted_split": interrupted,
        "checkpoints_at_kill": state_at_kill["checkpoints"],
        "skipped_on_rerun": skipped,
        "retrained_on_rerun": sorted(set(chunks) & set(finished), key=splits.index),
    }
    checks = {
        "finished_splits_skipped": sorted(skipped, key=splits.index) == finished and not evidence["retrained_on_rerun"]
    }
    if interrupted is not None:
        expected = max(state_at_kill["checkpoints"]["complete"], default=None)
        match = _RESUMED.search(chunks.get(interrupted, ""))
        evidence["expected_resume_step"] = expected
        evidence["resume_line"] = match.group(0) if match else None
        if expected is None:
            checks["interrupted_split_resumed"] = "starting from scratch" in chunks.get(interrupted, "")
        else:
            checks["interrupted_split_resumed"] = bool(
                match and int(match.group(2)) == expected and match.group(1).endswith(f"step_{expected}")
            )
    later = [s for s in splits if s not in finished and s != interrupted]
    checks["later_splits_started_fresh"] = all("starting from scratch" in chunks.get(s, "") for s in later)
    evidence["checks"] = checks
    evidence["ok"] = all(checks.values())
    return evidence


def split_outputs(runs: Path, splits: Sequence[str]) -> dict[str, Any]:
    """Per split: the view protocol run_info.json and the saved config.json record, the files a run must leave
    (predictions CSV, plots), its final metrics and steps."""
    found: dict[str, Any] = {}
    for split in splits:
        folder = runs / f"split_{split}"
        entry: dict[str, Any] = {}
        if (folder / "run_info.json").is_file():
            info = json.loads((folder / "run_info.json").read_text(encoding="utf-8"))
            entry["run_info_view_protocol"] = info.get("view_protocol")
            entry["train_images"], entry["validation_images"] = info.get("train_images"), info.get("validation_images")
            entry["max_train_steps"] = info.get("max_train_steps")
        if (folder / "model" / "config.json").is_file():
            config = json.loads((folder / "model" / "config.json").read_text(encoding="utf-8"))
            entry["config_view_protocol"] = config.get("view_protocol")
        entry["predictions"] = sorted(p.name for p in folder.glob("predictions_*.csv"))
        entry["plots"] = sorted(p.name for p in (folder / "plots").glob("*.png"))
        results = folder / "model" / "eval_results.json"
        if results.is_file():
            payload = json.loads(results.read_text(encoding="utf-8"))
            entry["results"] = [{"split": r["split"], **r["metrics"]} for r in payload["results"]]
        found[split] = entry
    return found


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _mib(value: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{value / 2**20:.1f} MiB"


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: command, phases, memory, disk, load, the summary table, the resume checks."""
    folder, args = report["folder"], report["args"]
    built = f"built in {folder['build_seconds']} s" if folder["built_now"] else "reused"
    lines = [
        "# AGIQA-3K 10-split dry run",
        "",
        f"Data: {folder['rows']} rows, {folder['size']} x {folder['size']} generated JPEGs ({built}); splits "
        f"{report['splits']}; {args['steps']} steps of {args['batch_size']} images per split.",
        "",
        "```bash",
        report["command_text"],
        "```",
        "",
        "| phase | wall time | exit | killed | peak RSS, process group (sampled) | processes then |",
        "|---|---|---|---|---|---|",
    ]
    for phase in report["phases"]:
        lines.append(
            f"| {phase['name']} | {phase['wall_seconds']:.1f} s | {phase['exit_code']} | "
            f"{phase['kill_reason'] or 'no'} | {_mib(phase['peak_group_rss_bytes'])} | "
            f"{phase['peak_group_processes']} |"
        )
    lines += [
        "",
        f"Largest single process (getrusage ru_maxrss of waited-for descendants): "
        f"{_mib(report['max_child_rss_bytes'])}.",
        f"Total wall time {report['total_wall_seconds']:.1f} s.",
        "",
        "| folder | files | apparent size | on disk |",
        "|---|---|---|---|",
    ]
    for name, usage in report["disk"].items():
        lines.append(
            f"| {name} | {usage['files']} | {_mib(usage['apparent_bytes'])} | {_mib(usage['allocated_bytes'])} |"
        )
    lines += [
        "",
        f"Load average before: {report['load_before']['loadavg_1_5_15']} ({report['load_before']['cpus']} CPUs); "
        f"after: {report['load_after']['loadavg_1_5_15']}.",
        "",
        "Summary table (`summary.md`):",
        "",
        report["summary_table"].rstrip(),
        "",
    ]
    resume = report.get("resume")
    if resume:
        lines += [
            f"Resume: killed ({resume['kill_reason']}) with splits {resume['finished_before_kill']} finished and split "
            f"{resume['interrupted_split']} interrupted (checkpoints then: {resume['checkpoints_at_kill']}); the rerun "
            f"skipped {resume['skipped_on_rerun']} and logged `{resume.get('resume_line')}`. Checks: "
            f"{resume['checks']} -> {'OK' if resume['ok'] else 'FAILED'}.",
            "",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _kill_at(text: str) -> tuple[str, int]:
    """`SPLIT:STEP` -> (split name, step) for `--kill-at-checkpoint`."""
    split, _, step = text.partition(":")
    if not split or not step.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected SPLIT:STEP, e.g. 3:4")
    return split, int(step)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The dry run's options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the data, the runs, logs and report")
    parser.add_argument("--data", type=Path, default=None, help="the AGIQA-3K-shaped folder (default OUT/AGIQA-3K)")
    parser.add_argument("--output_dir", type=Path, default=None, help="run_splits' folder (default OUT/runs)")
    parser.add_argument("--source", type=Path, default=None, help="real-format fixtures (default shared/data/AGIQA-3K)")
    parser.add_argument("--rows", type=int, default=None, help="first N rows of data.csv (default all 2982)")
    parser.add_argument("--size", type=int, default=512, help="side of the generated JPEGs")
    parser.add_argument("--seed", type=int, default=0, help="seeds the generated images")
    parser.add_argument("--splits", default="1-10", help="split names for run_splits.py")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per split (--max_train_steps)")
    parser.add_argument("--batch_size", type=int, default=16, help="training images per step")
    parser.add_argument("--eval_batch_size", type=int, default=64, help="images per evaluation batch")
    parser.add_argument("--checkpointing_steps", type=int, default=2, help="a checkpoint every N steps")
    parser.add_argument("--tiny_image_size", type=int, default=32, help="tiny CLIP input size = IPCE patch size")
    parser.add_argument("--tiny_patch_size", type=int, default=4, help="the tiny CLIP's ViT patch size")
    parser.add_argument("--num_crops", type=int, default=15, help="IPCE test-time patches (IPCE: 15)")
    parser.add_argument("--train_crops", type=int, default=8, help="IPCE training patches (IPCE: 8)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs, unless already set")
    parser.add_argument(
        "--kill-at-checkpoint",
        "--kill_at_checkpoint",
        dest="kill_at",
        type=_kill_at,
        default=None,
        metavar="SPLIT:STEP",
        help="SIGKILL the run once split SPLIT has written checkpoint step_STEP, then rerun it",
    )
    parser.add_argument(
        "--kill-after",
        "--kill_after",
        dest="kill_after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="SIGKILL the run after SECONDS, then rerun it",
    )
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between memory samples / kill checks")
    parser.add_argument("--echo", action="store_true", help="also print the runs' output")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Builds the folder (unless built with these settings), runs the command (killed and rerun when asked),
    writes the report; returns 0 when every split finished (and the resume checks passed)."""
    args = parse_args(argv)
    out = args.out.resolve()
    data = (args.data or out / "AGIQA-3K").resolve()
    runs = (args.output_dir or out / "runs").resolve()
    splits = parse_splits(args.splits)
    load_before = load_average()

    built_now, build_seconds = False, 0.0
    if not folder_is_built(data, args.rows, args.size, args.seed):
        started = time.perf_counter()
        build_folder(data, rows=args.rows, size=args.size, seed=args.seed, source=args.source)
        built_now, build_seconds = True, round(time.perf_counter() - started, 2)
    marker = json.loads((data / FOLDER_MARKER).read_text(encoding="utf-8"))
    print(f"data folder {data}: {marker['rows']} rows, {args.size} px ({'built' if built_now else 'reused'})")

    command = dry_run_command(args, data, runs)
    command_text = shlex.join(["python", *command[1:]])
    print("$ " + command_text, flush=True)
    env = child_env(args.threads)
    phases: list[Phase] = []
    resume = None
    kill_requested = args.kill_at is not None or args.kill_after is not None
    first = run_phase(
        "first run" if not kill_requested else "first run (killed)",
        command,
        out / "logs" / "phase1.log",
        env=env,
        runs=runs,
        kill_at=args.kill_at,
        kill_after=args.kill_after,
        poll=args.poll,
        echo=args.echo,
    )
    phases.append(first)
    if first.killed:
        finished = finished_splits(runs, splits)
        interrupted = next(
            (s for s in splits if s not in finished and (runs / f"split_{s}").is_dir()), None
        )  # the split that was running: the first unfinished one with a folder
        state = {
            "finished": finished,
            "interrupted": interrupted,
            "checkpoints": checkpoint_steps(runs / f"split_{interrupted}") if interrupted else {},
        }
        print(f"killed ({first.kill_reason}): finished {finished}, interrupted {interrupted}, {state['checkpoints']}")
        print("$ " + command_text + "   # the same command again", flush=True)
        second = run_phase(
            "rerun (resume)", command, out / "logs" / "phase2.log", env=env, runs=runs, poll=args.poll, echo=args.echo
        )
        phases.append(second)
        resume = resume_evidence(first, state, Path(second.log).read_text(encoding="utf-8"), splits)

    summary_md = runs / "summary.md"
    report: dict[str, Any] = {
        "folder": {"path": str(data), "rows": marker["rows"], "size": args.size, "built_now": built_now,
                   "build_seconds": build_seconds, "split_rows": marker["split_rows"]},
        "splits": splits,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": ["python", *command[1:]],
        "command_text": command_text,
        "env": {k: env[k] for k in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TQDM_DISABLE")},
        "phases": [asdict(p) for p in phases],
        "total_wall_seconds": round(sum(p.wall_seconds for p in phases), 2),
        "max_child_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "disk": {"data": disk_usage(data), "runs": disk_usage(runs)},
        "load_before": load_before,
        "load_after": load_average(),
        "finished_splits": finished_splits(runs, splits),
        "summary_table": summary_md.read_text(encoding="utf-8") if summary_md.is_file() else "(no summary.md)\n",
        "per_split": split_outputs(runs, splits),
        "resume": resume,
    }  # fmt: skip
    (out / f"{REPORT_NAME}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = markdown_report(report)
    (out / f"{REPORT_NAME}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    ok = phases[-1].exit_code == 0 and report["finished_splits"] == splits and (resume is None or resume["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Scoring speed and memory of `agqg score`, as ratios against baselines run in the same process.

Randomly initialised CLIP shapes (timing does not depend on the weights): ViT-B/32 (`b32`), ViT-B/16 (`b16`),
ViT-L/14 (`l14`). Every comparison alternates the contenders repeat by repeat and keeps each one's best
(minimum) time, as `timeit` does. On CPU the times are CPU seconds of the process (and, end to end, of its
DataLoader workers), so "img/s" means images per CPU-second of the 2-thread process: on a machine shared with
other jobs, wall-clock time mostly measures what the others leave us. On CUDA they are wall-clock seconds.

1. tensors: model scoring (`Scorer`: vision tower + cached grade-text features + AGQG head) on ready tensors
   vs the bare vision tower + projection, same dtype (target >= 0.95x).
2. e2e: `agqg score` on folders of JPEGs of each side in `--e2e-sides` (decode — reduced in the DCT domain for
   the resize protocol —, views in DataLoader workers, writing the CSV; model loading excluded) vs the bare
   vision tower on ready tensors, both as wall-clock images/s and as images per CPU-second counting the
   DataLoader workers' CPU time (targets: >= 0.95 at 1024 px and >= 0.9 at 2048 px for ViT-B/32 bf16).
3. crops: 15 crops + the resized image batched in one forward (auto dtype) vs one fp32 forward per view
   (target >= 3x).
4. ipce: our scoring (auto dtype, cached text features) vs re-encoding the K grade prompts padded to 77 tokens
   for every image in fp32, the IPCE/LIQE pattern (target >= 2x).
5. memory: peak RSS of `agqg score` (tiny model, tiny PNGs) over 1,000 vs 10,000 images (target < 50 MB growth).
6. compile: the `torch.compile`d vision tower (`agqg score --compile`) vs eager at the same dtype, and the
   compile (warm-up) time.

Usage:
    python benchmarks/bench_scoring.py                       # everything, CPU, a few minutes
    python benchmarks/bench_scoring.py --parts tensors,e2e --models b16 --e2e-images 512 --e2e-sides 1024,2048
    python benchmarks/bench_scoring.py --device cuda --dtypes fp16,bf16 --models b16,l14 --parts tensors
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with spinning, CPU time on a shared machine counts the time
# a thread waits for a descheduled sibling. Must be set before torch starts its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from modeling_agqg import AGQGForImageQualityAssessment  # noqa: E402
from modeling_agqg.tools.offline import random_agqg_model, tiny_agqg_model  # noqa: E402
from modeling_agqg.tools.scoring import DTYPES, Scorer, resolve_dtype  # noqa: E402
from modeling_agqg.views_agqg import ViewProtocol  # noqa: E402

RESIZE = ViewProtocol()

SHAPES = {
    "b32": {"vision_config": {"patch_size": 32}},
    "b16": {"vision_config": {"patch_size": 16}},
    "l14": {
        "vision_config": {
            "patch_size": 14,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
        },
        "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
        "projection_dim": 768,
    },
}


def build_model(shape: str, device: torch.device) -> AGQGForImageQualityAssessment:
    from transformers import CLIPConfig

    model = random_agqg_model(CLIPConfig(**SHAPES[shape]), seed=0)
    return model.to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def race(contenders: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, float]:
    """Best (minimum) seconds per call of each contender, calls interleaved (one warm-up each).

    On CPU the time is this process's CPU time (`time.process_time`, all threads): on a machine shared with
    other jobs wall-clock time mostly measures how much CPU the others left us, CPU time what the work costs.
    On CUDA it is wall-clock time after synchronising.
    """
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            _sync(device)
            start = clock()
            run()
            _sync(device)
            times[name].append(clock() - start)
    return {name: min(values) for name, values in times.items()}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_tower(model: AGQGForImageQualityAssessment, pixels: torch.Tensor, dtype: torch.dtype) -> Callable[[], None]:
    clip = model.clip

    @torch.inference_mode()
    def run() -> None:
        with _autocast(pixels.device, dtype):
            clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)

    return run


def bench_tensors(model, shape: str, dtype_name: str, batch: int, repeats: int, device: torch.device) -> float:
    dtype = DTYPES[dtype_name] if dtype_name != "auto" else resolve_dtype("auto", device)
    size = model.config.clip_config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    scorer = Scorer(model, device, dtype, RESIZE)
    times = race({"bare": bare_tower(model, pixels, dtype), "ours": lambda: scorer(pixels)}, repeats, device)
    bare_ips, ours_ips = batch / times["bare"], batch / times["ours"]
    print(
        f"[tensors] {shape} {str(dtype).removeprefix('torch.')} batch {batch}: bare vision tower {bare_ips:.1f} img/s, "
        f"AGQG scoring {ours_ips:.1f} img/s, ratio {ours_ips / bare_ips:.3f} (target >= 0.95)",
        flush=True,
    )
    return bare_ips


def _write_jpeg(folder: Path, side: int, index: int) -> None:
    rng = np.random.default_rng(index)
    coarse = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC), dtype=np.int16)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(folder / f"{index:05d}.jpg", quality=90)


def _write_jpegs(folder: Path, count: int, side: int = 512) -> None:
    """side x side JPEGs with natural-image-like content (smooth colour fields, edges and texture), written in
    parallel (thousands of them are needed to time a GPU)."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(partial(_write_jpeg, folder, side), range(count), chunksize=64))


def bench_e2e(
    model,
    shape: str,
    images: int,
    side: int,
    batch: int,
    repeats: int,
    device: torch.device,
    work: Path,
    workers: int | None,
) -> None:
    from modeling_agqg.tools import scoring
    from modeling_agqg.tools.cli import main

    dtype = resolve_dtype("auto", device)
    folder = work / f"jpegs_{side}"
    if not folder.exists():
        _write_jpegs(folder, images, side)
    model_dir = work / f"model_{shape}"
    if not model_dir.exists():
        model.save_pretrained(model_dir)
    size = model.config.clip_config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    tower = bare_tower(model, pixels, dtype)
    tower()
    per_cpu, per_wall, bare_cpu, bare_wall = [], [], [], []
    for repeat in range(repeats):
        out = work / f"scores_{shape}_{side}_{repeat}.csv"
        children_before = _children_cpu()
        code = main(
            ["score", str(folder), "--model", str(model_dir), "--out", str(out), "--batch-size", str(batch)]
            + ["--device", device.type, "--quiet", "--overwrite"]
            + (["--workers", str(workers)] if workers is not None else [])
        )
        assert code == 0, code
        run = scoring.LAST_RUN
        # CPU: the scoring loop's CPU time plus that of the DataLoader workers (decoding, views), i.e. as if nothing
        # overlapped; on a dedicated machine overlap can only make the real ratio higher.
        per_cpu.append(run["images"] / (run["process_seconds"] + _children_cpu() - children_before))
        per_wall.append(run["images"] / run["seconds"])
        # The baseline alternates with the end-to-end runs: as many images, in batches, on ready tensors.
        steps = max(1, images // batch)
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            tower()
        _sync(device)
        bare_wall.append(steps * batch / (time.perf_counter() - wall))
        bare_cpu.append(steps * batch / (time.process_time() - cpu))
    name = f"{shape} {str(dtype).removeprefix('torch.')}, {images} {side}x{side} JPEGs"
    print(
        f"[e2e] {name}: wall clock {max(per_wall):.1f} vs bare tower {max(bare_wall):.1f} img/s, ratio "
        f"{max(per_wall) / max(bare_wall):.3f}",
        flush=True,
    )
    if device.type == "cpu":
        print(
            f"[e2e] {name}: per CPU-second (main process + DataLoader workers) {max(per_cpu):.1f} vs bare tower "
            f"{max(bare_cpu):.1f} img/s, ratio {max(per_cpu) / max(bare_cpu):.3f}",
            flush=True,
        )


def bench_compile(model, shape: str, batch: int, repeats: int, device: torch.device) -> None:
    """Eager vs `torch.compile`d vision tower, same dtype, through the scorer; the first call's extra time is
    the compile (warm-up) cost."""
    import copy

    from modeling_agqg.tools.scoring import compile_vision_tower

    dtype = resolve_dtype("auto", device)
    size = model.config.clip_config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    eager = Scorer(model, device, dtype, RESIZE)
    compiled_model = copy.deepcopy(model)
    started = time.perf_counter()
    compile_vision_tower(compiled_model)
    compiled = Scorer(compiled_model, device, dtype, RESIZE)
    compiled(pixels)
    warm_up = time.perf_counter() - started
    times = race({"eager": lambda: eager(pixels), "compiled": lambda: compiled(pixels)}, repeats, device)
    print(
        f"[compile] {shape} {str(dtype).removeprefix('torch.')} batch {batch}: eager {batch / times['eager']:.1f} "
        f"img/s, compiled {batch / times['compiled']:.1f} img/s, ratio {times['eager'] / times['compiled']:.3f}; "
        f"compile + first batch {warm_up:.1f} s wall",
        flush=True,
    )


def bench_crops(model, shape: str, images: int, repeats: int, device: torch.device) -> None:
    dtype = resolve_dtype("auto", device)
    size = model.config.clip_config.vision_config.image_size
    views = 16
    pixels = torch.randn(images * views, 3, size, size, device=device)
    ours = Scorer(model, device, dtype, ViewProtocol.parse("crops:15"))
    fp32 = Scorer(model, device, torch.float32, RESIZE)

    def per_view() -> None:
        for index in range(pixels.shape[0]):
            fp32(pixels[index : index + 1])

    times = race({"per_view_fp32": per_view, "ours": lambda: ours(pixels)}, repeats, device)
    print(
        f"[crops] {shape}: 15 crops + resized, {images} images: batched {str(dtype).removeprefix('torch.')} "
        f"{images / times['ours']:.2f} img/s vs one fp32 forward per view {images / times['per_view_fp32']:.2f} "
        f"img/s, speed-up {times['per_view_fp32'] / times['ours']:.2f}x (target >= 3)",
        flush=True,
    )


def bench_ipce(model, shape: str, batch: int, repeats: int, device: torch.device) -> None:
    dtype = resolve_dtype("auto", device)
    size = model.config.clip_config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    ours = Scorer(model, device, dtype, RESIZE)
    num_grades = model.config.num_grades
    # The grade prompts padded to 77 tokens, given per image so that the text tower encodes them every time.
    ids = model.grade_prompt_ids.view(num_grades, -1, model.grade_prompt_ids.shape[-1])[:, 0]
    mask = model.grade_prompt_mask.view(num_grades, -1, ids.shape[-1])[:, 0]
    ids, mask = ids.expand(batch, -1, -1).contiguous(), mask.expand(batch, -1, -1).contiguous()

    @torch.inference_mode()
    def ipce_style() -> None:
        model(pixel_values=pixels, input_ids=ids, attention_mask=mask)

    times = race({"ipce_fp32": ipce_style, "ours": lambda: ours(pixels)}, repeats, device)
    print(
        f"[ipce] {shape}: ours ({str(dtype).removeprefix('torch.')}, cached text) {batch / times['ours']:.1f} img/s vs "
        f"re-encoding {num_grades} prompts x 77 tokens per image in fp32 {batch / times['ipce_fp32']:.1f} img/s, "
        f"speed-up {times['ipce_fp32'] / times['ours']:.2f}x (target >= 2)",
        flush=True,
    )


_MEMORY_CHILD = """
import resource, sys, threading, time
from modeling_agqg.tools.cli import main

samples = []
finished = threading.Event()


def sample() -> None:  # resident set size of this process every 20 ms
    while not finished.is_set():
        with open("/proc/self/statm") as handle:
            samples.append(int(handle.read().split()[1]) * resource.getpagesize())
        time.sleep(0.02)


thread = threading.Thread(target=sample, daemon=True)
thread.start()
code = main(sys.argv[1:])
finished.set()
thread.join()
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(f"PEAK {max(samples)} {workers} {code}")
"""


def bench_memory(sizes: list[int], work: Path) -> None:
    model = tiny_agqg_model(seed=0)
    model_dir = work / "model_tiny"
    model.save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    folder = work / "tiny_pngs"
    folder.mkdir(exist_ok=True)
    peaks = {}
    for size in sorted(sizes):
        existing = len(os.listdir(folder))
        for index in range(existing, size):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{index:06d}.png")
        # Score exactly `size` files: a list file with the first `size` names (itself streamed).
        listing = work / f"list_{size}.txt"
        listing.write_text("".join(f"{folder / f'{i:06d}.png'}\n" for i in range(size)))
        out = work / f"memory_{size}.csv"
        command = [sys.executable, "-c", _MEMORY_CHILD, "score", str(listing), "--model", str(model_dir)]
        command += ["--out", str(out), "--batch-size", "64", "--quiet", "--overwrite", "--workers", "1"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        line = [text for text in done.stdout.splitlines() if text.startswith("PEAK")]
        if not line:
            raise RuntimeError(done.stderr[-2000:])
        _, own, workers, code = line[0].split()
        peaks[size] = (int(own) / 2**20, int(workers) / 2**20)
        print(
            f"[memory] {size} images: peak RSS main {peaks[size][0]:.1f} MB, worker {peaks[size][1]:.1f} MB", flush=True
        )
    low, high = min(peaks), max(peaks)
    growth_main = peaks[high][0] - peaks[low][0]
    growth_worker = peaks[high][1] - peaks[low][1]
    print(
        f"[memory] growth {low} -> {high} images: main {growth_main:+.1f} MB, worker {growth_worker:+.1f} MB "
        "(target < 50 MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="tensors,e2e,crops,ipce,memory,compile")
    parser.add_argument("--models", default="b32,b16")
    parser.add_argument("--dtypes", default="auto", help="for the tensors part: auto, fp32, bf16, fp16 (comma list)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--e2e-images", type=int, default=256)
    parser.add_argument("--e2e-repeats", type=int, default=2)
    parser.add_argument("--e2e-sides", default="512,1024,2048", help="e2e: JPEG sides (comma list)")
    parser.add_argument("--workers", type=int, default=None, help="e2e: DataLoader workers (default: agqg's)")
    parser.add_argument("--crop-images", type=int, default=2)
    parser.add_argument("--memory-sizes", default="1000,10000")
    parser.add_argument("--work-dir", default=None, help="where to write images and models (default: a temp dir)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", auto dtype {str(resolve_dtype('auto', device)).removeprefix('torch.')}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        for shape in args.models.split(","):
            if not parts & {"tensors", "e2e", "crops", "ipce", "compile"}:
                break
            model = build_model(shape, device)
            if "tensors" in parts:
                for dtype_name in args.dtypes.split(","):
                    bench_tensors(model, shape, dtype_name, args.batch_size, args.repeats, device)
            if "e2e" in parts:
                for side in (int(v) for v in args.e2e_sides.split(",")):
                    bench_e2e(
                        model,
                        shape,
                        args.e2e_images,
                        side,
                        args.batch_size,
                        args.e2e_repeats,
                        device,
                        work,
                        args.workers,
                    )
            if "crops" in parts:
                bench_crops(model, shape, args.crop_images, args.repeats, device)
            if "ipce" in parts:
                bench_ipce(model, shape, args.batch_size, args.repeats, device)
            if "compile" in parts:
                bench_compile(model, shape, args.batch_size, args.repeats, device)
            del model
        if "memory" in parts:
            bench_memory([int(v) for v in args.memory_sizes.split(",")], work)


if __name__ == "__main__":
    main()

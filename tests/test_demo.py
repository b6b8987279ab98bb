"""`agqg demo`: the app module stays uploadable to a Space, `agqg explain` and the demo draw one figure, bad files
become messages, and the running app, driven in a real headless Chromium, shows the pipeline's scores and charts."""

from __future__ import annotations

import ast
import base64
import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from PIL import Image

from modeling_agqg.tools import demo
from modeling_agqg.tools.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
CHROMEDRIVER = shutil.which("chromedriver")
# Headless Chromium that makes no connection of its own (updates, sync, field trials) and starts from a fresh profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
)
# AGQG_DEMO_SCREENSHOT=docs/demo.png keeps the browser test's screenshot there (the README shows it).
SCREENSHOT = os.environ.get("AGQG_DEMO_SCREENSHOT")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modeling_agqg.tools.offline import clip_character_tokenizer

    folder = tmp_path_factory.mktemp("demo") / "tiny-model"
    make_tiny_model(clip_character_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small photographs (scikit-image's, when installed; random pixels otherwise)."""
    folder = tmp_path_factory.mktemp("photos")
    try:
        from skimage import data

        arrays = [data.astronaut(), data.chelsea()]
    except ImportError:
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    paths = []
    for index, (array, name) in enumerate(zip(arrays, ("astronaut.png", "cat.jpg"), strict=True)):
        image = Image.fromarray(array)
        image.thumbnail((256, 256))
        path = folder / name
        image.save(path, **({"quality": 90} if index else {}))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> dict[str, Path]:
    """A text file named like an image, a truncated JPEG and an empty PNG."""
    folder = tmp_path_factory.mktemp("broken")
    files = {"not_image": folder / "notes.png", "truncated": folder / "torn.jpg", "empty": folder / "empty.png"}
    files["not_image"].write_text("this is text, not a PNG")
    jpeg = photos[1].read_bytes()
    files["truncated"].write_bytes(jpeg[: len(jpeg) // 3])
    files["empty"].write_bytes(b"")
    return files


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> demo.DemoScorer:
    pytest.importorskip("matplotlib")
    return demo.load_scorer(str(model_dir))


@pytest.fixture(scope="module")
def pipe(model_dir: Path):
    from transformers import pipeline

    return pipeline("image-quality", model=str(model_dir), trust_remote_code=True)


# ---------------------------------------------------------------------------------------------
# The module and the command, without a browser
# ---------------------------------------------------------------------------------------------


def test_demo_module_is_self_contained_for_a_space() -> None:
    """The Space runs this file alone: it imports only the standard library, gradio, matplotlib, PIL, torch and
    transformers (third-party ones inside functions), and nothing of this package."""
    tree = ast.parse((REPO_ROOT / "modeling_agqg" / "tools" / "demo.py").read_text())
    allowed = {"gradio", "matplotlib", "PIL", "torch", "transformers"} | set(sys.stdlib_module_names) | {"__future__"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: relative import"
            found.append((node.module.split(".")[0], node))
        elif isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node) for alias in node.names]
    assert {name for name, _ in found} - allowed == set()
    top_level = {name for name, node in found if node in tree.body}
    assert top_level <= set(sys.stdlib_module_names) | {"__future__"}, top_level


def test_nothing_else_imports_gradio() -> None:
    probe = (
        "import sys\nimport modeling_agqg.tools.explain, modeling_agqg.tools.demo, hub_cards.publish, hub_cards.space\n"
        "print('gradio' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_without_gradio_the_command_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(["demo", "--model", "any"])
    assert code == 2
    assert stderr.getvalue().count("\n") == 1 and 'pip install "agqg[demo]"' in stderr.getvalue()


def test_a_missing_model_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(["demo", "--model", str(tmp_path / "no-such-model")])
    assert code == 2 and "cannot load" in stderr.getvalue() and "Traceback" not in stderr.getvalue()


def test_explain_and_the_demo_draw_one_figure(
    scorer: demo.DemoScorer, photos: list[Path], model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`agqg explain` and the demo agree on the numbers behind the figure, and both draw it with
    `demo.explanation_figure`."""
    from modeling_agqg.tools import explain

    local = explain.explain(str(photos[0]), str(model_dir), device="cpu", dtype="fp32")
    shown = scorer.explain(str(photos[0]))
    assert shown["grade"] == local["grade"] and shown["score_range"] == local["score_range"]
    for key in ("score", "ability", "discrimination"):
        assert shown[key] == pytest.approx(local[key], abs=1e-4), key
    assert np.allclose(shown["difficulties"], local["difficulties"], atol=1e-4)
    assert np.allclose(list(shown["grade_probs"].values()), list(local["grade_probs"].values()), atol=1e-4)

    drawn = []
    original = demo.explanation_figure
    monkeypatch.setattr(demo, "explanation_figure", lambda *a, **k: drawn.append(a[0]["path"]) or original(*a, **k))
    explain.plot_explanation(local, str(tmp_path / "explain.png"))
    png = scorer.chart_png(shown)
    assert drawn == [local["path"], shown["path"]]
    assert (tmp_path / "explain.png").read_bytes()[:4] == png[:4] == b"\x89PNG"


def test_score_files_matches_the_pipeline_and_turns_bad_files_into_messages(
    scorer: demo.DemoScorer, pipe, photos: list[Path], broken: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image as PILImage

    huge = tmp_path / "huge.png"
    Image.new("RGB", (400, 400), "white").save(huge)
    files = [*photos, *broken.values(), huge]
    original_limit = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = 70_000  # the photos have at most 256x256; 400x400 is over twice the limit: Pillow's
    # decompression-bomb error
    try:
        page, rows, csv_path = demo.score_files(scorer, [str(p) for p in files], "a photo of a cat", csv_dir=tmp_path)
    finally:
        PILImage.MAX_IMAGE_PIXELS = original_limit
    expected = [pipe({"image": str(p), "prompt": "a photo of a cat"})["score"] for p in photos]
    assert [row[1] for row in rows[:2]] == [round(v, 4) for v in expected]
    assert page.count('class="agqg-card"') == 2 and page.count('class="agqg-error"') == 4
    assert "Traceback" not in page and str(tmp_path) not in page  # file names, not temporary paths
    messages = {row[0]: row[-1] for row in rows[2:]}
    assert "not an image" in messages["notes.png"]
    assert "truncated" in messages["torn.jpg"] or "corrupt" in messages["torn.jpg"]
    assert messages["empty.png"].startswith("empty.png:")
    assert messages["huge.png"].startswith("huge.png:") and (
        "large" in messages["huge.png"] or "pixels" in messages["huge.png"]
    )
    with open(csv_path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["file"] for r in table] == [p.name for p in files]
    assert [float(r["score"]) for r in table[:2]] == pytest.approx(expected, abs=1e-6)  # full precision
    assert table[2]["score"] == "" and "not an image" in table[2]["error"]


def test_too_many_files_are_cut_with_a_message(scorer: demo.DemoScorer, photos: list[Path], tmp_path: Path) -> None:
    page, rows, _ = demo.score_files(scorer, [str(photos[0])] * 3, max_images=2, csv_dir=tmp_path)
    assert len(rows) == 2 and "1 more files were not scored: at most 2 at a time" in page


# ---------------------------------------------------------------------------------------------
# The running app in a real browser
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"agqg demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"agqg demo did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _table_rows(browser) -> list[list[str]]:
    """The results table's rows as shown, top to bottom (Gradio renders them as positioned `div` rows)."""
    from selenium.webdriver.common.by import By

    rows = sorted(browser.find_elements(By.CSS_SELECTOR, "#agqg-table .virtual-row"), key=lambda r: r.location["y"])
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")] for row in rows]


def _sorted(browser) -> bool:
    """Whether the table shows its scored rows by descending score."""
    rows = _table_rows(browser)
    scores = [float(row[1]) for row in rows if row[1]]
    return len(scores) == 3 and scores == sorted(scores, reverse=True) and not rows[-1][1]


def _full_page_png(browser) -> bytes:
    """A screenshot of the whole page, beyond the window (Chromium's DevTools protocol)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    return base64.b64decode(shot["data"])


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='agqg-chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.slow
def test_demo_in_a_headless_browser(
    model_dir: Path, photos: list[Path], broken: dict[str, Path], pipe, tmp_path: Path
) -> None:
    """`agqg demo` on a free port; Chromium uploads two photos and a broken file, types a prompt and presses Score; the
    page shows the pipeline's scores, a rendered chart per photo, the broken file's message, a table that sorts by score
    and the CSV; the screenshot goes to AGQG_DEMO_SCREENSHOT (docs/demo.png) when set."""
    pytest.importorskip("gradio", reason="the demo extra is not installed: pip install 'agqg[demo]'")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    log = tmp_path / "demo.log"
    env = dict(os.environ)
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
    )
    command = [sys.executable, "-m", "modeling_agqg", "demo", "--model", str(model_dir), "--port", str(port)]
    prompt = "a photo"
    with open(log, "w") as log_handle:
        server = subprocess.Popen(command, env=env, stdout=log_handle, stderr=subprocess.STDOUT, cwd=tmp_path)
    browser = None
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_http(url, server, log)
        browser = _browser()
        browser.get(url)
        wait = WebDriverWait(browser, 60)
        upload = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#agqg-files input[type=file]"))
        upload.send_keys("\n".join(str(p) for p in [*photos, broken["not_image"]]))
        wait.until(lambda b: all(p.stem in b.find_element(By.ID, "agqg-files").text for p in photos))
        # The paste box also takes an uploaded file (a real clipboard paste needs a desktop session).
        browser.find_element(By.CSS_SELECTOR, "#agqg-paste input[type=file]").send_keys(str(photos[1]))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#agqg-paste img"))
        browser.find_element(By.CSS_SELECTOR, "#agqg-prompt textarea").send_keys(prompt)
        browser.find_element(By.ID, "agqg-score").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".agqg-card .agqg-chart")) == 3)

        cards = browser.find_elements(By.CSS_SELECTOR, ".agqg-card")
        shown = {
            card.get_attribute("data-file"): card.find_element(By.CSS_SELECTOR, ".agqg-score").text for card in cards
        }
        expected = {p.name: pipe({"image": str(p), "prompt": prompt})["score"] for p in photos}
        expected["pasted image"] = expected[photos[1].name]
        assert set(shown) == set(expected)
        for name, text in shown.items():
            assert float(text) == pytest.approx(expected[name], abs=5e-5), name  # shown with 4 decimals
        for chart in browser.find_elements(By.CSS_SELECTOR, "img.agqg-chart"):
            natural = browser.execute_script("return [arguments[0].complete, arguments[0].naturalWidth]", chart)
            assert natural[0] and natural[1] > 0 and chart.size["width"] > 100 and chart.size["height"] > 50
        errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".agqg-error")]
        assert len(errors) == 1 and "notes.png" in errors[0] and "not an image" in errors[0]
        assert "Traceback" not in browser.page_source

        # The table sorts by a column through the column's menu (Gradio's dataframe): scores descending.
        score_header = browser.find_element(By.CSS_SELECTOR, "#agqg-table th[title='score']")
        browser.execute_script("arguments[0].click()", score_header.find_element(By.CSS_SELECTOR, "button"))
        sort = wait.until(
            lambda b: [i for i in b.find_elements(By.CSS_SELECTOR, "[role=menuitem]") if "desc" in i.text]
        )
        browser.execute_script("arguments[0].click()", sort[0])
        scores = [float(row[1]) for row in wait.until(lambda b: _table_rows(b)[:3] if _sorted(b) else None)]
        assert scores == sorted(scores, reverse=True) and _table_rows(browser)[3][0] == "notes.png"
        link = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#agqg-csv a[download]"))
        with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as answer:
            rows = list(csv.DictReader(io.StringIO(answer.read().decode())))
        # full precision (another process: float32 sums may differ in the last bits)
        assert {r["file"]: float(r["score"]) for r in rows if r["score"]} == pytest.approx(expected, abs=1e-6)

        screenshot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "demo.png"
        screenshot.write_bytes(_full_page_png(browser))
        with Image.open(screenshot) as picture:
            assert picture.size[0] >= 1000
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

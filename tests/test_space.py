"""`agqg push ... --space`: a Gradio Space whose app is the `agqg demo` module, pinned to the pushed model commit,
pushed to the Hub test server (`tests/hub_server.py`) and run from there in a fresh process."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from hub_server import HubServer, use_hub_server, validate_card_metadata
from PIL import Image

from hub_cards.space import MODULE_FILE, SPACE_FILES, render_space_card, space_files

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPO = "agqg-tester/tiny-demo-model"
SPACE_REPO = "agqg-tester/tiny-demo"
SHA = "0123456789abcdef0123456789abcdef01234567"

# Runs the pushed Space in a fresh interpreter from a folder holding only its files: `import app` builds the Gradio
# app (loading the model from the test Hub at the pinned commit); then the same module scores one image.
SPACE_RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import app
import agqg_demo

scorer = agqg_demo.load_scorer(app.MODEL_REPO, revision=app.MODEL_REVISION, code_revision=app.CODE_REVISION)
print("RESULT " + json.dumps({
    "app": type(app.demo).__name__,
    "score": scorer.explain(sys.argv[2])["score"],
    "agqg_demo_from": agqg_demo.__file__,
    "local_package_imported": "modeling_agqg" in sys.modules or "hub_cards" in sys.modules,
}))
"""


def _assignments(source: str) -> dict[str, object]:
    """Module-level `NAME = literal` assignments of a Python file."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_space_files_parse_and_pin_the_model() -> None:
    from huggingface_hub import RepoCard, SpaceCard
    from packaging.requirements import Requirement

    files = space_files(SPACE_REPO, MODEL_REPO, SHA)
    assert set(files) == set(SPACE_FILES)
    card = SpaceCard(files["README.md"].decode())
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.sdk_version
    assert card.data.models == [MODEL_REPO] and card.data.license == "apache-2.0"
    assert RepoCard(files["README.md"].decode()).data.to_dict()["sdk"] == "gradio"
    assert validate_card_metadata(files["README.md"].decode(), "space") == []
    app = _assignments(files["app.py"].decode())
    assert app == {"MODEL_REPO": MODEL_REPO, "MODEL_REVISION": SHA, "CODE_REVISION": None}
    assert files[MODULE_FILE] == (REPO_ROOT / "modeling_agqg" / "tools" / "demo.py").read_bytes()
    lines = [line for line in files["requirements.txt"].decode().splitlines() if line and not line.startswith("#")]
    names = {Requirement(line).name for line in lines}
    assert names == {"torch", "transformers", "matplotlib"}  # gradio comes from the SDK (sdk_version)


def test_the_test_hub_checks_space_metadata() -> None:
    card = str(render_space_card(SPACE_REPO, MODEL_REPO, SHA))
    assert validate_card_metadata(card.replace("sdk: gradio", "sdk: flask"), "space")
    assert validate_card_metadata(card.replace("colorFrom: blue", "colorFrom: teal"), "space")
    assert validate_card_metadata(card.replace("short_description: ", "short_description: " + "x" * 60), "space")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory):
    """`agqg push MODEL_DIR MODEL_REPO --space SPACE_REPO` to a test Hub, run twice (the second changes nothing)."""
    from modeling_agqg.tools.offline import clip_character_tokenizer

    tmp = tmp_path_factory.mktemp("space")
    model_dir = tmp / "tiny-model"
    make_tiny_model(clip_character_tokenizer()).save_pretrained(model_dir)
    with HubServer() as server, pytest.MonkeyPatch.context() as monkeypatch:
        env = use_hub_server(monkeypatch, server, tmp / "hf_home")
        command = [sys.executable, "-m", "modeling_agqg", "push", str(model_dir), MODEL_REPO, "--space", SPACE_REPO]
        runs, heads = [], []
        for _ in range(2):
            runs.append(subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, timeout=300))
            heads.append({kind: repo.branches["main"] for (kind, _), repo in server.repos.items()})
        yield {"server": server, "env": env, "runs": runs, "heads": heads, "model_dir": model_dir, "tmp": tmp}
        assert server.unhandled_requests == []


def test_push_creates_a_space_pinned_to_the_pushed_commit(pushed) -> None:
    from huggingface_hub import SpaceCard

    first, second = pushed["runs"]
    assert first.returncode == 0, first.stderr[-3000:]
    server: HubServer = pushed["server"]
    model_head = server.repos[("model", MODEL_REPO)].branches["main"]
    files = server.files(SPACE_REPO, "space")
    assert set(SPACE_FILES) <= set(files)
    # The Space pins the commit that holds the model's code and weights: the one the model card's examples pin
    # (the card itself is committed after it, at the head).
    pinned = _assignments(files["app.py"].decode())["MODEL_REVISION"]
    assert f'revision="{pinned}"' in server.files(MODEL_REPO)["README.md"].decode()
    card = SpaceCard(files["README.md"].decode())
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.models == [MODEL_REPO]
    assert f"spaces/{SPACE_REPO}" in first.stdout and pinned in first.stdout
    assert f"/spaces/{SPACE_REPO}" in server.files(MODEL_REPO)["README.md"].decode()  # the model card links to it
    # The same push again: nothing changes, on the model or on the Space.
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 uploaded, 4 unchanged" in second.stdout
    assert pushed["heads"][0] == pushed["heads"][1] == {"model": model_head, "space": pushed["heads"][0]["space"]}


def test_the_pushed_space_runs_the_demo_from_the_hub(pushed) -> None:
    """The Space's files alone, in a fresh process: the app builds, and it scores like the local pipeline."""
    pytest.importorskip("gradio", reason="the demo extra is not installed: pip install 'agqg[demo]'")
    pytest.importorskip("matplotlib")
    from transformers import pipeline

    assert pushed["runs"][0].returncode == 0, pushed["runs"][0].stderr[-3000:]
    tmp: Path = pushed["tmp"]
    space_dir = tmp / "space-checkout"
    space_dir.mkdir(exist_ok=True)
    for name, content in pushed["server"].files(SPACE_REPO, "space").items():
        (space_dir / name).write_bytes(content)
    image = tmp / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(image)
    env = {k: v for k, v in pushed["env"].items() if k != "HF_TOKEN"}  # a public model needs no token
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HOME=str(tmp / "fresh_hf_home"))
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", SPACE_RUNNER, str(space_dir), str(image)],
        env=env,
        cwd=space_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["app"] == "Blocks" and not result["local_package_imported"]
    assert Path(result["agqg_demo_from"]).parent == space_dir
    local = pipeline("image-quality", model=str(pushed["model_dir"]), trust_remote_code=True)(str(image))["score"]
    assert result["score"] == pytest.approx(local, abs=1e-6)

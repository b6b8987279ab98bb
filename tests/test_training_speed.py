"""The CPU training re-formulations of `training/speed.py` compute the same numbers as the model they replace."""

from __future__ import annotations

import copy

import pytest
import torch
from test_train import TINY_RUN_FLAGS, run_training

from modeling_agqg import AGQGForImageQualityAssessment
from modeling_agqg.tools.offline import tiny_agqg_model
from training.speed import EAGER_ATTENTION_MAX_TOKENS, _patch_embedding_forward, speed_up_vision_training


@pytest.mark.parametrize("size", [(32, 32), (35, 41)])  # whole patches, and leftovers the convolution drops
def test_patch_embedding_matmul_equals_the_convolution(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, kernel_size=8, stride=8, bias=False)
    pixels = torch.randn(2, 3, *size, requires_grad=True)
    expected = conv(pixels)
    expected.square().sum().backward()
    weight_grad, input_grad = conv.weight.grad.clone(), pixels.grad.clone()
    conv.weight.grad, pixels.grad = None, None

    actual = _patch_embedding_forward(conv, pixels)
    actual.square().sum().backward()
    assert actual.shape == expected.shape == (2, 16, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.weight.grad, weight_grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(pixels.grad, input_grad, atol=1e-5, rtol=1e-5)


def _model(tokenizer, image_size: int, patch_size: int) -> AGQGForImageQualityAssessment:
    return tiny_agqg_model(tokenizer=tokenizer, clip_shapes={"image_size": image_size, "patch_size": patch_size})


def test_sped_up_model_gives_the_same_scores_and_gradients(tokenizer, tmp_path) -> None:
    model = _model(tokenizer, image_size=32, patch_size=4)  # 65 tokens: both re-formulations apply
    fast = copy.deepcopy(model)
    assert speed_up_vision_training(fast) == ["patch_embedding_matmul", "eager_attention"]
    assert speed_up_vision_training(fast) == []  # idempotent
    assert fast.clip.vision_model.config._attn_implementation == "eager"
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    results = []
    for candidate in (model, fast):
        candidate.train()
        output = candidate(pixel_values=pixels)
        output.score.sum().backward()
        grads = {n: p.grad.clone() for n, p in candidate.named_parameters() if p.grad is not None}
        results.append((output.score.detach(), grads))
    (score, grads), (fast_score, fast_grads) = results
    torch.testing.assert_close(fast_score, score, atol=1e-5, rtol=1e-5)
    assert grads.keys() == fast_grads.keys() and any("patch_embedding" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)

    # Nothing about the saved model changes: same weights' names, and it reloads as a plain model.
    assert fast.state_dict().keys() == model.state_dict().keys()
    fast.save_pretrained(tmp_path)
    reloaded = AGQGForImageQualityAssessment.from_pretrained(tmp_path).eval()
    fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).score, fast(pixel_values=pixels).score)


def test_long_sequences_keep_their_attention(tokenizer) -> None:
    model = _model(tokenizer, image_size=48, patch_size=4)  # 145 tokens
    assert model.clip.vision_model.embeddings.num_positions > EAGER_ATTENTION_MAX_TOKENS
    before = model.clip.vision_model.config._attn_implementation
    assert speed_up_vision_training(model) == ["patch_embedding_matmul"]
    assert model.clip.vision_model.config._attn_implementation == before


@pytest.mark.slow
def test_train_py_applies_them_and_trains_alike(tmp_path, synthetic_cache) -> None:
    """`training/train.py` uses the re-formulations on CPU (and says so); `--fast_cpu_kernels false` opts out;
    both runs end with the same weights up to float rounding."""
    from safetensors.torch import load_file

    weights = {}
    for fast in ("true", "false"):
        out = tmp_path / f"fast_{fast}"
        flags = ["--data_root", str(synthetic_cache), "--num_train_epochs", "1", "--report_to", "none"]
        flags += ["--plots", "false", "--fast_cpu_kernels", fast, "--output_dir", str(out)]
        result = run_training([*TINY_RUN_FLAGS, *flags], tmp_path)
        assert ("CPU training speed-ups (exact): patch_embedding_matmul, eager_attention" in result.stdout) == (
            fast == "true"
        )
        weights[fast] = load_file(out / "model" / "model.safetensors")
    assert weights["true"].keys() == weights["false"].keys()
    for name, tensor in weights["false"].items():
        torch.testing.assert_close(weights["true"][name], tensor, atol=2e-4, rtol=1e-3, msg=name)

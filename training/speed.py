"""Exact re-formulations that make a CLIP vision tower's training step faster on CPU.

Both change how the same numbers are computed, never what is computed (equal up to float rounding, tested in
`tests/test_training_speed.py`), and neither changes the weights' names, shapes or the saved model:

1. **Patch embedding as one matrix product.** CLIP embeds patches with a convolution whose kernel equals its
   stride (p x p, no padding), which is the same map as cutting the image into p x p patches and multiplying
   each flattened patch by the kernel reshaped to (D, 3 p^2):

       conv(x, W)[b, :, i, j] = W.reshape(D, 3 p^2) @ vec(x[b, :, i p:(i+1) p, j p:(j+1) p])

   oneDNN's convolution backward is slow for such large kernels with few output positions (ViT-B/32: 160 ms
   of a 1.27 s bf16 step at batch 8 on one core, where the equal matrix product takes a few ms).
2. **Plain (eager) attention for short sequences.** torch's CPU flash-attention backward is tuned for long
   sequences; at ViT-B/32's 50 tokens the eager softmax(Q K^T / sqrt(d)) V path is faster (about 16 ms per
   layer saved at batch 8), while at ViT-B/16's 197 tokens both cost the same. Sequences of at most
   `EAGER_ATTENTION_MAX_TOKENS` tokens use it.

Measured with `benchmarks/bench_training.py` (docs/training.md). Applied by `training/train.py` on CPU
unless `fast_cpu_kernels: false`.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

EAGER_ATTENTION_MAX_TOKENS = 100


def _patch_embedding_forward(self: torch.nn.Conv2d, pixel_values: torch.Tensor) -> torch.Tensor:
    """`Conv2d.forward` for kernel == stride, no padding: patchify then one linear map. (B, C, H, W) ->
    (B, D, H // p, W // p); rows and columns beyond a whole patch are dropped, as the convolution does."""
    batch, channels, height, width = pixel_values.shape
    patch_h, patch_w = self.kernel_size
    rows, cols = height // patch_h, width // patch_w
    patches = pixel_values[:, :, : rows * patch_h, : cols * patch_w]
    patches = patches.reshape(batch, channels, rows, patch_h, cols, patch_w).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, rows * cols, channels * patch_h * patch_w)
    embedded = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)  # (B, rows*cols, D)
    return embedded.transpose(1, 2).reshape(batch, self.out_channels, rows, cols)


def _is_patchify_conv(conv: torch.nn.Module) -> bool:
    return (
        isinstance(conv, torch.nn.Conv2d)
        and tuple(conv.kernel_size) == tuple(conv.stride)
        and tuple(conv.padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _set_eager_attention(vision_model: Any) -> bool:
    """Switches the vision tower's attention to the eager implementation. CLIP's attention layers hold the
    vision config object itself and read this field at every forward (transformers 4.x and 5.x)."""
    if vision_model.config._attn_implementation == "eager":
        return False
    vision_model.config._attn_implementation = "eager"
    return True


def speed_up_vision_training(model: Any) -> list[str]:
    """Applies the exact CPU re-formulations above to `model.clip.vision_model` in place.

    Args:
        model: An `AGQGForImageQualityAssessment` (any object with a CLIP model at `.clip`).

    Returns:
        What was applied (`"patch_embedding_matmul"`, `"eager_attention"`), for the run's log.
    """
    if getattr(model.clip.config, "model_type", None) != "clip":
        return []  # the re-formulations are written and tested for CLIP's vision embeddings only
    vision_model = model.clip.vision_model
    applied = []
    conv = vision_model.embeddings.patch_embedding
    if _is_patchify_conv(conv) and getattr(conv.forward, "__func__", None) is not _patch_embedding_forward:
        conv.forward = types.MethodType(_patch_embedding_forward, conv)
        applied.append("patch_embedding_matmul")
    num_tokens = vision_model.embeddings.num_positions
    if num_tokens <= EAGER_ATTENTION_MAX_TOKENS and _set_eager_attention(vision_model):
        applied.append("eager_attention")
    return applied

"""Draws docs/views.png: where each view scheme's views of one photograph come from, for a 224-pixel model.

    python docs/views_figure.py [--out docs/views.png]

The boxes are computed by the same functions that cut the views (`modeling_agqg.views_agqg`), so the picture
cannot drift from the code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from transformers import CLIPImageProcessor

from modeling_agqg.views_agqg import (
    PixelSpec,
    ViewProtocol,
    crop_grid,
    crops_source_hw,
    ipce_patch_corners,
    ipce_resized_hw,
)

SIZE = 224


def resize_box(width: int, height: int, spec: PixelSpec) -> tuple[float, float, float, float]:
    """(left, top, box width, box height) in the photo of what the resize + centre crop keeps."""
    resized_h, resized_w = spec.resized_hw(height, width)
    scale = width / resized_w
    top, left = (resized_h - SIZE) // 2, (resized_w - SIZE) // 2
    return left * scale, top * scale, SIZE * scale, SIZE * scale


def crops_boxes(width: int, height: int, protocol: ViewProtocol) -> list[tuple[float, float, float, float]]:
    """The `crops` scheme's test-time crops, drawn back in the photo's coordinates (`crops_source_hw`: a photo
    smaller than the crop is first enlarged)."""
    source_h, source_w = crops_source_hw(height, width, SIZE)
    scale = source_w / width
    corners = crop_grid(source_h, source_w, SIZE, SIZE, protocol.num_crops)
    return [(left / scale, top / scale, SIZE / scale, SIZE / scale) for top, left in corners]


def ipce_boxes(width: int, height: int, protocol: ViewProtocol) -> list[tuple[float, float, float, float]]:
    """IPCE's test-time patches, drawn back in the photo's coordinates (the photo is first brought up to a
    shorter side of `short_side`)."""
    resized_h, resized_w = ipce_resized_hw(height, width, protocol)
    scale = resized_w / width
    corners = ipce_patch_corners((resized_h, resized_w), protocol, SIZE, train=False)
    return [(left / scale, top / scale, SIZE / scale, SIZE / scale) for top, left in corners]


def view_mosaic(photo: Any, protocol: ViewProtocol, spec: PixelSpec) -> Any:
    """The views `make_views` cuts, de-normalised and tiled 4 per row (crops/patches first, the whole last)."""
    import numpy as np
    import torch
    from PIL import Image

    from modeling_agqg.views_agqg import make_views

    views = make_views(Image.fromarray(photo), protocol.with_crop_size(SIZE), spec)
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    tiles = ((views * std + mean).clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    columns = 4 if len(tiles) > 1 else 1
    rows = -(-len(tiles) // columns)
    gap = 6
    mosaic = np.full((rows * (SIZE + gap), columns * (SIZE + gap), 3), 255, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        mosaic[row * (SIZE + gap) : row * (SIZE + gap) + SIZE, column * (SIZE + gap) : column * (SIZE + gap) + SIZE] = (
            tile
        )
    return mosaic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("views.png")))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from skimage import data

    photo = data.chelsea()  # 451 x 300, public domain
    height, width = photo.shape[:2]
    spec = PixelSpec.from_image_processor(CLIPImageProcessor())
    schemes = [
        ("resize", ViewProtocol(), [resize_box(width, height, spec)], "the processor's resize + centre crop"),
        ("crops:15", ViewProtocol.parse("crops:15"), None, "15 native-resolution grid crops + the resized view"),
        ("ipce", ViewProtocol.parse("ipce"), None, "15 patches (short side brought up to 512) + the whole image"),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 9.5), dpi=90, gridspec_kw={"height_ratios": [1, 1.5]})
    colours = plt.get_cmap("tab20")
    for column, (name, protocol, boxes, caption) in enumerate(schemes):
        if boxes is None:
            boxes = (crops_boxes if protocol.scheme == "crops" else ipce_boxes)(width, height, protocol)
        top_axis, bottom_axis = axes[0, column], axes[1, column]
        top_axis.imshow(photo)
        for index, (left, top, box_w, box_h) in enumerate(boxes):
            colour = colours(index % 20)
            top_axis.add_patch(Rectangle((left, top), box_w, box_h, fill=False, edgecolor=colour, linewidth=1.4))
            if len(boxes) > 1:
                top_axis.text(left + 3, top + 13, str(index + 1), color=colour, fontsize=7, weight="bold")
        top_axis.set_xlim(0, width)
        top_axis.set_ylim(height, 0)
        top_axis.set_title(f"{name}: {caption}", fontsize=9)
        top_axis.axis("off")
        bottom_axis.imshow(view_mosaic(photo, protocol, spec))
        bottom_axis.set_title(f"the {protocol.num_views()} view(s) the model sees, in order", fontsize=9)
        bottom_axis.axis("off")
    figure.suptitle(f"View schemes for a {SIZE}-pixel model on a {width}x{height} photo (top: boxes in photo pixels)")
    figure.tight_layout()
    figure.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The docs figure: one example of each finding with its MS-CXR box(es).

Run `python -m cxr_fgbg.data.phantom.figure [OUT.png]` (default docs/images/phantom_findings.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxr_fgbg.data.phantom.anatomy import Exposure, Frame, PatientAnatomy, expose, render_frontal
from cxr_fgbg.data.phantom.findings import CARDIOMEGALY_CTR, FindingSpec, render_finding

EXAMPLES = (
    FindingSpec("Atelectasis", "bilateral", "moderate", "lower", "basal"),
    FindingSpec("Cardiomegaly", "central", "large"),
    FindingSpec("Consolidation", "right", "moderate", "upper"),
    FindingSpec("Edema", "bilateral", "moderate"),
    FindingSpec("Lung Opacity", "left", "moderate", "middle"),
    FindingSpec("Pleural Effusion", "right", "moderate"),
    FindingSpec("Pneumonia", "left", "large", "lower"),
    FindingSpec("Pneumothorax", "left", "moderate"),
)


def render_example(spec: FindingSpec, seed: int, size: int = 320) -> Image.Image:
    """One frontal image with `spec` drawn and its box(es) in red, captioned with side and size."""
    rng = np.random.default_rng(seed)
    anatomy = PatientAnatomy.sample(rng)
    frame = Frame.make(size, int(size * 0.88), anatomy.habitus, rng)
    ctr = rng.uniform(*CARDIOMEGALY_CTR[spec.size]) if spec.category == "Cardiomegaly" else None
    maps = render_frontal(anatomy, frame, rng, ctr=ctr)
    rendered = render_finding(spec, maps, rng)
    pixels = expose(maps.density + maps.markings, Exposure.sample(rng, False), rng, size)
    image = Image.fromarray((pixels >> 4).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    if rendered is not None:
        for mask in rendered.masks.values():
            ys, xs = np.nonzero(mask)
            draw.rectangle([int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())], outline=(255, 40, 40), width=2)
    caption = f"{spec.category} ({spec.side}, {spec.size})"
    draw.rectangle([0, 0, image.width, 16], fill=(0, 0, 0))
    draw.text((4, 2), caption, fill=(255, 255, 255))
    return image


def make_figure(path: str | Path, seed: int = 3) -> Path:
    tiles = [render_example(spec, seed * 100 + i) for i, spec in enumerate(EXAMPLES)]
    w, h = tiles[0].width, tiles[0].height
    sheet = Image.new("RGB", (4 * w, 2 * h))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 4) * w, (i // 4) * h))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=96).save(out, optimize=True)  # keeps the committed PNG small
    return out


if __name__ == "__main__":
    print(make_figure(sys.argv[1] if len(sys.argv) > 1 else "docs/images/phantom_findings.png"))

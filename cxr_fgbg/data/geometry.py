"""The one record of what was done to an image on its way to the model, and its inverse.

Every resize / crop / pad in the toolkit is an axis-aligned affine map

    x_model = x_original * scale_x - left        y_model = y_original * scale_y - top

in continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``, so a pixel's centre is ``i + 0.5``).
``scale = resized / original`` per axis (from the integer sizes, so both axes are exact), and
``top``/``left`` are integer offsets of the model window inside the resized image: positive = crop,
negative = padding. Boxes and points go through that formula; arrays (images, heat maps, masks) are
resampled with :func:`torch.nn.functional.interpolate` to the resized size — whose sampling grid,
``src = (dst + 0.5) / scale - 0.5`` with ``align_corners=False``, is the same map — and then cut or
padded by the integer offsets. So one definition serves image, heat map, mask and boxes alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Geometry", "clip_boxes"]

Mode = Literal["bilinear", "nearest", "area"]


@dataclass(frozen=True)
class Geometry:
    """Original size -> resized size -> model window (crop when offsets > 0, pad when < 0).

    Attributes are plain ints so the record is exact and JSON-serialisable (``to_dict``).
    """

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    top: int
    left: int
    model_hw: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("original_hw", "resized_hw", "model_hw"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 2 or min(value) < 1:
                raise ValueError(f"Geometry.{name} must be two positive ints, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "top", int(self.top))
        object.__setattr__(self, "left", int(self.left))

    # ----------------------------------------------------------------- constructors
    @classmethod
    def identity(cls, original_hw: tuple[int, int]) -> Geometry:
        return cls(tuple(original_hw), tuple(original_hw), 0, 0, tuple(original_hw))

    @classmethod
    def resize_shorter_and_center_crop(cls, original_hw: tuple[int, int], size: int) -> Geometry:
        """The LDM's input: shorter side resized to `size`, the longer side centre-cropped to `size`.

        What the crop cuts away is lost; mapping a heat map back gives NaN there.
        """
        height, width = (int(v) for v in original_hw)
        scale = size / min(height, width)
        resized = (size, max(size, round(width * scale))) if height <= width else (
            max(size, round(height * scale)), size)
        return cls((height, width), resized, (resized[0] - size) // 2, (resized[1] - size) // 2, (size, size))

    @classmethod
    def resize_to_fit_and_pad(cls, original_hw: tuple[int, int], size: int) -> Geometry:
        """Longer side resized to `size`, the shorter side padded symmetrically: nothing is lost."""
        height, width = (int(v) for v in original_hw)
        scale = size / max(height, width)
        resized = (size, min(size, max(1, round(width * scale)))) if height >= width else (
            min(size, max(1, round(height * scale))), size)
        top, left = -((size - resized[0]) // 2), -((size - resized[1]) // 2)
        return cls((height, width), resized, top, left, (size, size))

    @classmethod
    def resize(cls, original_hw: tuple[int, int], model_hw: tuple[int, int]) -> Geometry:
        """A plain resize (aspect ratio not kept)."""
        return cls(tuple(original_hw), tuple(model_hw), 0, 0, tuple(model_hw))

    # ----------------------------------------------------------------- the affine map
    @property
    def scale_yx(self) -> tuple[float, float]:
        return (self.resized_hw[0] / self.original_hw[0], self.resized_hw[1] / self.original_hw[1])

    def points_to_model(self, points: Any) -> np.ndarray:
        """(n, 2) x, y in original pixels -> model pixels (continuous coordinates)."""
        pts = _as_array(points, 2, "points")
        sy, sx = self.scale_yx
        return np.stack([pts[:, 0] * sx - self.left, pts[:, 1] * sy - self.top], axis=1)

    def points_to_original(self, points: Any) -> np.ndarray:
        pts = _as_array(points, 2, "points")
        sy, sx = self.scale_yx
        return np.stack([(pts[:, 0] + self.left) / sx, (pts[:, 1] + self.top) / sy], axis=1)

    def boxes_to_model(self, boxes: Any) -> np.ndarray:
        """(n, 4) x, y, w, h in original pixels -> model pixels; not clipped (see `clip_boxes`)."""
        b = _as_array(boxes, 4, "boxes")
        sy, sx = self.scale_yx
        return np.stack(
            [b[:, 0] * sx - self.left, b[:, 1] * sy - self.top, b[:, 2] * sx, b[:, 3] * sy], axis=1
        )

    def boxes_to_original(self, boxes: Any) -> np.ndarray:
        b = _as_array(boxes, 4, "boxes")
        sy, sx = self.scale_yx
        return np.stack(
            [(b[:, 0] + self.left) / sx, (b[:, 1] + self.top) / sy, b[:, 2] / sx, b[:, 3] / sy], axis=1
        )

    # ----------------------------------------------------------------- arrays
    def map_to_model(self, array: Any, mode: Mode = "bilinear", fill: float = 0.0) -> np.ndarray:
        """Resample an original-size array, (H, W) or channel-last (H, W, C), to the model window.

        ``bilinear`` is antialiased when shrinking (images); ``nearest`` keeps mask labels unchanged.
        Padded areas get `fill`.
        """
        chw, restore = _to_chw(array, self.original_hw, "map_to_model")
        resized = _interpolate(chw, self.resized_hw, mode)
        out = _window(resized, self.top, self.left, self.model_hw, fill)
        return restore(out)

    def map_to_model_chw(self, array: Any, mode: Mode = "bilinear", fill: float = 0.0) -> np.ndarray:
        """As `map_to_model` for a channel-first (C, H, W) array (what MONAI transforms carry)."""
        chw = np.asarray(array)
        _check_hw(chw.shape[-2:], self.original_hw, "map_to_model_chw")
        return _window(_interpolate(chw, self.resized_hw, mode), self.top, self.left, self.model_hw, fill)

    def map_to_original(self, array: Any, mode: Mode = "bilinear") -> np.ndarray:
        """Bring a model-size map (heat map: bilinear; mask: nearest) back to the original image.

        Float output. Parts of the original that the crop cut away are NaN (no information there); model
        pixels that were padding are dropped. ``nearest`` neither dilates nor erodes a mask beyond
        the resampling itself.
        """
        chw, restore = _to_chw(array, self.model_hw, "map_to_original")
        chw = chw.astype(np.float32, copy=False)
        # Undo the window with edge replication, so interpolation near the cut sees no fake zeros;
        # the cut-away area is set to NaN afterwards from the exact valid rectangle.
        resized = _unwindow(chw, self.top, self.left, self.resized_hw)
        out = _interpolate(resized, self.original_hw, "nearest" if mode == "nearest" else mode)
        out[:, ~self.valid_original_mask()] = np.nan
        return restore(out)

    def valid_original_mask(self) -> np.ndarray:
        """Bool (H, W) of original pixels whose centre falls inside the model window."""
        sy, sx = self.scale_yx
        rows = (np.arange(self.original_hw[0]) + 0.5) * sy - self.top
        cols = (np.arange(self.original_hw[1]) + 0.5) * sx - self.left
        row_ok = (rows >= 0) & (rows < self.model_hw[0])
        col_ok = (cols >= 0) & (cols < self.model_hw[1])
        return row_ok[:, None] & col_ok[None, :]

    def valid_model_mask(self) -> np.ndarray:
        """Bool (h, w) of model pixels that hold image content (False where padding was added)."""
        rows = np.arange(self.model_hw[0]) + self.top
        cols = np.arange(self.model_hw[1]) + self.left
        row_ok = (rows >= 0) & (rows < self.resized_hw[0])
        col_ok = (cols >= 0) & (cols < self.resized_hw[1])
        return row_ok[:, None] & col_ok[None, :]

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "original_hw": list(self.original_hw),
            "resized_hw": list(self.resized_hw),
            "top": self.top,
            "left": self.left,
            "model_hw": list(self.model_hw),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> Geometry:
        """Accepts the dict or its JSON text (as stored in an npz file)."""
        if isinstance(data, (str, bytes, np.ndarray)):
            data = json.loads(str(np.asarray(data).item()) if isinstance(data, np.ndarray) else data)
        return cls(tuple(data["original_hw"]), tuple(data["resized_hw"]), data["top"], data["left"],
                   tuple(data["model_hw"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def clip_boxes(boxes: Any, hw: tuple[int, int]) -> np.ndarray:
    """Clip (n, 4) x, y, w, h boxes to an image of size `hw`; a box wholly outside gets w or h = 0."""
    b = _as_array(boxes, 4, "boxes")
    x0 = np.clip(b[:, 0], 0, hw[1])
    y0 = np.clip(b[:, 1], 0, hw[0])
    x1 = np.clip(b[:, 0] + b[:, 2], 0, hw[1])
    y1 = np.clip(b[:, 1] + b[:, 3], 0, hw[0])
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


# --------------------------------------------------------------------- helpers
def _as_array(values: Any, width: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, width)
    arr = arr.reshape(-1, width) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {np.shape(values)}")
    return arr


def _check_hw(got: tuple[int, ...], expected: tuple[int, int], where: str) -> None:
    if tuple(got) != tuple(expected):
        raise ValueError(
            f"{where}: array has spatial size {tuple(got)}, the geometry expects {tuple(expected)}"
        )


def _to_chw(array: Any, hw: tuple[int, int], where: str):
    """(H, W) or (H, W, C) -> (C, H, W) plus a function that restores the caller's layout."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        _check_hw(arr.shape, hw, where)
        return arr[None], lambda out: out[0]
    if arr.ndim == 3:
        _check_hw(arr.shape[:2], hw, where)
        return np.moveaxis(arr, -1, 0), lambda out: np.moveaxis(out, 0, -1)
    raise ValueError(f"{where}: expected an (H, W) or (H, W, C) array, got shape {arr.shape}")


def _interpolate(chw: np.ndarray, out_hw: tuple[int, int], mode: Mode) -> np.ndarray:
    """Resample (C, H, W) to `out_hw`; integer/bool inputs keep their dtype with ``nearest``."""
    import torch
    import torch.nn.functional as F

    if tuple(chw.shape[-2:]) == tuple(out_hw):
        return np.array(chw, copy=True)
    dtype = chw.dtype
    tensor = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
    if mode == "nearest":
        out = F.interpolate(tensor, size=out_hw, mode="nearest-exact")
    elif mode == "bilinear":
        shrink = out_hw[0] < chw.shape[-2] or out_hw[1] < chw.shape[-1]
        out = F.interpolate(tensor, size=out_hw, mode="bilinear", align_corners=False, antialias=shrink)
    elif mode == "area":
        out = F.interpolate(tensor, size=out_hw, mode="area")
    else:
        raise ValueError(f"unknown interpolation mode {mode!r} (bilinear, nearest or area)")
    result = out[0].numpy()
    if mode == "nearest" and dtype != np.float32:
        return result.astype(dtype)
    return result


def _window(chw: np.ndarray, top: int, left: int, out_hw: tuple[int, int], fill: float) -> np.ndarray:
    """Cut (offset > 0) or pad (offset < 0) a (C, H, W) array to `out_hw` at (top, left)."""
    channels, height, width = chw.shape
    out = np.full((channels, *out_hw), fill, dtype=chw.dtype)
    src_r0, src_c0 = max(top, 0), max(left, 0)
    src_r1, src_c1 = min(top + out_hw[0], height), min(left + out_hw[1], width)
    if src_r1 > src_r0 and src_c1 > src_c0:
        out[:, src_r0 - top:src_r1 - top, src_c0 - left:src_c1 - left] = chw[:, src_r0:src_r1, src_c0:src_c1]
    return out


def _unwindow(chw: np.ndarray, top: int, left: int, resized_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of `_window`: place the model window back into the resized frame, edge-replicated."""
    height, width = chw.shape[-2:]
    r0, c0 = max(-top, 0), max(-left, 0)
    r1, c1 = min(height, resized_hw[0] - top), min(width, resized_hw[1] - left)
    inner = chw[:, r0:r1, c0:c1]
    dst_r0, dst_c0 = r0 + top, c0 + left
    pads = ((0, 0), (dst_r0, resized_hw[0] - dst_r0 - inner.shape[1]),
            (dst_c0, resized_hw[1] - dst_c0 - inner.shape[2]))
    return np.pad(inner, pads, mode="edge")

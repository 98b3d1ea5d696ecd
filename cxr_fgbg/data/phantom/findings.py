"""The eight MS-CXR findings: what a study has, where it sits, how it is drawn, and its exact mask.

Each finding is drawn as a soft profile `p` in [0, 1] (1 inside, falling off over a few pixels at
the border, wider for ill-defined findings) clipped to the visible lung field; its ground-truth
mask is exactly `p >= 0.5` (the half-maximum border), reduced to one connected component per
side. Positions vary as they do clinically (side, lobe/zone, size), so anatomy alone cannot tell
where a finding is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxr_fgbg.data.phantom.anatomy import SIDES, FrontalMaps, LungShape, smooth_noise

CATEGORIES = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
    "Lung Opacity", "Pleural Effusion", "Pneumonia", "Pneumothorax",
)
SIZES = ("small", "moderate", "large")
ZONES = ("upper", "middle", "lower")
_WEIGHTS = {
    "Pleural Effusion": 0.19, "Lung Opacity": 0.16, "Atelectasis": 0.14, "Cardiomegaly": 0.12,
    "Edema": 0.1, "Consolidation": 0.1, "Pneumonia": 0.1, "Pneumothorax": 0.09,
}
_SIDE_P = {  # right, left, bilateral
    "Pleural Effusion": (0.38, 0.34, 0.28), "Pneumothorax": (0.47, 0.47, 0.06),
    "Lung Opacity": (0.4, 0.35, 0.25), "Consolidation": (0.42, 0.38, 0.2), "Pneumonia": (0.42, 0.38, 0.2),
    "Atelectasis": (0.35, 0.35, 0.3),
}
_LUNG_FINDINGS = ("Pleural Effusion", "Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis")
# Cardiothoracic ratio ranges for mild / moderate / severe cardiomegaly.
CARDIOMEGALY_CTR = {"small": (0.56, 0.59), "moderate": (0.59, 0.63), "large": (0.63, 0.69)}
MIN_PIXELS = 12


def category_slug(category: str) -> str:
    """`Pleural Effusion` -> `pleural_effusion` (the ground-truth file name part)."""
    return category.lower().replace(" ", "_")


@dataclass(frozen=True)
class FindingSpec:
    """One finding of a study as the report states it."""

    category: str
    side: str  # right | left | bilateral | central (cardiomegaly)
    size: str  # small | moderate | large
    zone: str | None = None  # upper | middle | lower for parenchymal findings
    variant: str | None = None  # atelectasis: plate | basal

    @property
    def sides(self) -> tuple[str, ...]:
        if self.side == "bilateral":
            return SIDES
        return (self.side,)


def sample_findings(rng: np.random.Generator, normal_fraction: float) -> list[FindingSpec]:
    """Draw the findings of one study (an empty list is a normal study), with clinical co-occurrence."""
    if rng.random() < normal_fraction:
        return []
    names = list(_WEIGHTS)
    weights = np.array([_WEIGHTS[n] for n in names])
    count = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    chosen = [names[i] for i in rng.choice(len(names), size=count, replace=False, p=weights / weights.sum())]
    if "Consolidation" in chosen and "Pneumonia" in chosen:
        chosen.remove("Consolidation" if rng.random() < 0.5 else "Pneumonia")
    # heart failure: cardiomegaly and bilateral effusions often come with edema
    if "Edema" in chosen and "Cardiomegaly" not in chosen and rng.random() < 0.4:
        chosen.append("Cardiomegaly")
    specs: list[FindingSpec] = []
    for name in sorted(chosen, key=CATEGORIES.index):
        specs.append(_sample_one(rng, name, force_bilateral="Edema" in chosen and name == "Pleural Effusion"))
    if "Edema" in chosen and "Pleural Effusion" not in chosen and rng.random() < 0.3:
        specs.append(FindingSpec("Pleural Effusion", "bilateral", str(rng.choice(SIZES[:2]))))
    return _resolve_pneumothorax(rng, sorted(specs, key=lambda s: CATEGORIES.index(s.category)))


def _sample_one(rng: np.random.Generator, name: str, force_bilateral: bool = False) -> FindingSpec:
    size = str(rng.choice(SIZES, p=[0.4, 0.35, 0.25]))
    if name == "Cardiomegaly":
        return FindingSpec(name, "central", size)
    if name == "Edema":
        return FindingSpec(name, "bilateral", size)
    side = "bilateral" if force_bilateral else str(rng.choice(["right", "left", "bilateral"], p=_SIDE_P[name]))
    if name in ("Pleural Effusion", "Pneumothorax"):
        return FindingSpec(name, side, size)
    if name == "Atelectasis":
        if size == "small":
            return FindingSpec(name, side, size, str(rng.choice(["middle", "lower"], p=[0.35, 0.65])), "plate")
        return FindingSpec(name, side, size, "lower", "basal")
    return FindingSpec(name, side, size, str(rng.choice(ZONES, p=[0.3, 0.3, 0.4])))


def _resolve_pneumothorax(rng: np.random.Generator, specs: list[FindingSpec]) -> list[FindingSpec]:
    """Keep a pneumothorax off the side of another lung finding (no hydropneumothorax in the phantom)."""
    ptx = [s for s in specs if s.category == "Pneumothorax"]
    if not ptx:
        return specs
    used = {side for s in specs if s.category in (*_LUNG_FINDINGS, "Edema") for side in s.sides}
    free = [side for side in SIDES if side not in used]
    rest = [s for s in specs if s.category != "Pneumothorax"]
    if not free:
        return rest
    spec = ptx[0]
    if spec.side == "bilateral" and len(free) == 2:
        return specs
    side = spec.side if spec.side in free else str(rng.choice(free))
    return sorted([*rest, FindingSpec(spec.category, side, spec.size)], key=lambda s: CATEGORIES.index(s.category))


@dataclass
class RenderedFinding:
    """A drawn finding: its spec and the exact mask of each side (one connected component each)."""

    spec: FindingSpec
    masks: dict[str, np.ndarray]

    @property
    def mask(self) -> np.ndarray:
        out = np.zeros_like(next(iter(self.masks.values())))
        for m in self.masks.values():
            out |= m
        return out


def render_finding(spec: FindingSpec, maps: FrontalMaps, rng: np.random.Generator) -> RenderedFinding | None:
    """Draw `spec` into `maps` (density, markings) and return its masks; None if it found no room."""
    if spec.category == "Cardiomegaly":
        mask = _largest_component(maps.heart_level > 0)
        return RenderedFinding(spec, {"central": mask}) if mask.sum() >= MIN_PIXELS else None
    profiles = {}
    for side in spec.sides:
        for _ in range(6):
            profile = _profile(spec, side, maps, rng)
            mask = _largest_component(profile.p >= 0.5)
            if mask.sum() >= MIN_PIXELS:
                break
        else:
            return None
        profile.p[(profile.p >= 0.5) & ~mask] = 0.0  # nothing visible outside the mask's component
        profiles[side] = (profile, mask)
    for profile, _ in profiles.values():
        _apply(spec, profile, maps, rng)
    return RenderedFinding(spec, {side: mask for side, (_, mask) in profiles.items()})


@dataclass
class _Profile:
    p: np.ndarray
    pleural_line: np.ndarray | None = None
    collapsed: np.ndarray | None = None


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def _zone_y(lung: LungShape, zone: str, rng: np.random.Generator) -> float:
    span = lung.dome - lung.apex
    lo, hi = {"upper": (0.2, 0.38), "middle": (0.45, 0.62), "lower": (0.68, 0.82)}[zone]
    return lung.apex + span * rng.uniform(lo, hi)


def _pick_centre(spec: FindingSpec, side: str, maps: FrontalMaps, rng: np.random.Generator,
                 zone: str) -> tuple[float, float]:
    """A centre in the requested zone of that lung, on visible lung (not behind heart or mediastinum)."""
    lung = maps.anatomy.lungs[side]
    sign = -1.0 if side == "right" else 1.0
    best = (0.5 * (lung.medial + lung.lateral), _zone_y(lung, zone, rng))
    for _ in range(12):
        lat = lung.medial + (lung.lateral - lung.medial) * rng.uniform(0.3, 0.75)
        y = _zone_y(lung, zone, rng)
        row, col = maps.frame.to_pixel(sign * lat, y)
        if maps.lung_visible[row, col] > 0.9:
            return lat, y
        best = (lat, y)
    return best


def _blob_level(lat: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float],
                rng: np.random.Generator, irregular: float) -> np.ndarray:
    """Approximate signed distance (> 0 inside) of an irregular ellipse."""
    dl = (lat - np.float32(centre[0])) / np.float32(radii[0])
    dy = (y - np.float32(centre[1])) / np.float32(radii[1])
    r = np.sqrt(dl * dl + dy * dy)
    theta = np.arctan2(dy, dl)
    bump = np.zeros_like(r)
    for k in (2, 3, 4):
        bump += np.float32(irregular * rng.uniform(0.3, 1.0) / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return ((1.0 + bump - r) * np.float32(min(radii))).astype(np.float32)


def _profile(spec: FindingSpec, side: str, maps: FrontalMaps, rng: np.random.Generator) -> _Profile:
    frame = maps.frame
    lat = frame.local(side)
    y = frame.y
    lung = maps.anatomy.lungs[side]
    size_i = SIZES.index(spec.size)
    cat = spec.category
    visible = maps.lung_visible * frame.soft(maps.lung_level[side])  # this side's lung only
    px = 512.0 / max(frame.height, frame.width)  # edge widths are given for a 512-pixel image
    if cat in ("Consolidation", "Pneumonia", "Lung Opacity"):
        radius = rng.uniform(*[(0.075, 0.1), (0.12, 0.16), (0.18, 0.24)][size_i])
        centre = _pick_centre(spec, side, maps, rng, spec.zone or "lower")
        radii = (radius * rng.uniform(0.85, 1.2), radius * rng.uniform(0.85, 1.25))
        irregular = {"Consolidation": 0.35, "Pneumonia": 0.35, "Lung Opacity": 0.3}[cat]
        level = _blob_level(lat, y, centre, radii, rng, irregular)
        if cat == "Pneumonia":  # multifocal patches around the main one
            for _ in range(int(rng.integers(1, 3))):
                offset = (centre[0] + rng.uniform(-0.5, 0.5) * radius, centre[1] + rng.uniform(-0.6, 0.6) * radius)
                level = np.maximum(level, _blob_level(lat, y, offset, (radius * 0.6, radius * 0.55), rng, 0.3))
        if cat == "Consolidation" and spec.zone == "upper" and side == "right":
            fissure = centre[1] + rng.uniform(0.5, 0.9) * radii[1]  # lobar: sharp lower edge at the minor fissure
            level = np.minimum(level, np.float32(fissure) - y)
        edge = {"Consolidation": 3.0, "Pneumonia": 4.0, "Lung Opacity": 6.0}[cat] / px
        return _Profile(frame.soft(level, edge) * visible)
    if cat == "Edema":
        radius = rng.uniform(*[(0.28, 0.33), (0.36, 0.42), (0.45, 0.52)][size_i])
        centre = (lung.medial + rng.uniform(0.12, 0.2), rng.uniform(-0.1, 0.08))
        level = _blob_level(lat, y, centre, (radius * 1.05, radius * 1.15), rng, 0.2)
        return _Profile(frame.soft(level, 9.0 / px) * visible)
    if cat == "Pleural Effusion":
        height = (lung.dome + lung.cp_drop - lung.apex) * rng.uniform(
            *[(0.1, 0.15), (0.22, 0.3), (0.4, 0.52)][size_i])
        bottom = lung.dome + lung.cp_drop
        rel = np.clip((lat - lung.medial) / (lung.lateral - lung.medial), 0.0, 1.2)
        top = bottom - np.float32(height) * (0.55 + 0.45 * rel**2)  # meniscus: higher at the chest wall
        return _Profile(frame.soft(y - top, 2.0 / px) * visible)
    if cat == "Atelectasis":
        if spec.variant == "plate":
            centre = _pick_centre(spec, side, maps, rng, spec.zone or "lower")
            dl, dy = lat - np.float32(centre[0]), y - np.float32(centre[1])
            tilt = np.deg2rad(rng.uniform(-14, 14))
            u = dl * np.float32(np.cos(tilt)) + dy * np.float32(np.sin(tilt))
            v = -dl * np.float32(np.sin(tilt)) + dy * np.float32(np.cos(tilt))
            half_len, half_th = rng.uniform(0.14, 0.22), rng.uniform(0.02, 0.03)
            level = (1.0 - (u / half_len) ** 2 - (v / half_th) ** 2) * np.float32(half_th / 2)
            return _Profile(frame.soft(level.astype(np.float32), 1.5 / px) * visible)
        height = rng.uniform(*[(0.1, 0.14), (0.12, 0.18), (0.22, 0.3)][size_i])
        span_out = max(lung.lateral - lung.dome_peak, 1e-3)
        span_in = max(lung.dome_peak - lung.medial, 1e-3)
        rel = np.where(lat >= lung.dome_peak, (lat - lung.dome_peak) / span_out,
                       0.35 * (lung.dome_peak - lat) / span_in)
        dome = lung.dome + lung.cp_drop * rel**2
        wave = np.float32(0.25 * height) * np.sin(lat * np.float32(rng.uniform(8, 14)) + rng.uniform(0, 6.3))
        return _Profile(frame.soft((y - (dome - height - wave)).astype(np.float32), 3.0 / px) * visible)
    if cat == "Pneumothorax":
        scale = rng.uniform(*[(0.85, 0.89), (0.74, 0.8), (0.58, 0.66)][size_i])
        anchor = (lung.medial + rng.uniform(0.1, 0.2), lung.dome - rng.uniform(0.0, 0.1))
        collapsed_level = lung.level(lat, y, scale, anchor)
        lung_soft = frame.soft(maps.lung_level[side])
        collapsed = frame.soft(collapsed_level)
        line = np.clip(1.0 - (collapsed_level * np.float32(frame.scale / (1.3 / px))) ** 2, 0.0, 1.0) * visible
        return _Profile(lung_soft * (1.0 - collapsed) * visible, line.astype(np.float32), collapsed * lung_soft)
    raise ValueError(f"unknown finding {cat!r}")


_AMPLITUDE = {
    "Consolidation": (0.21, 0.27), "Pneumonia": (0.19, 0.25), "Lung Opacity": (0.13, 0.19),
    "Atelectasis": (0.2, 0.27), "Edema": (0.1, 0.15), "Pleural Effusion": (0.28, 0.34),
}
_TEXTURE = {"Consolidation": 0.15, "Pneumonia": 0.3, "Lung Opacity": 0.12, "Atelectasis": 0.15, "Edema": 0.25,
            "Pleural Effusion": 0.04}


def _apply(spec: FindingSpec, profile: _Profile, maps: FrontalMaps, rng: np.random.Generator) -> None:
    """Add the finding's density (or, for a pneumothorax, its lucency and pleural line) to `maps`."""
    frame = maps.frame
    cat = spec.category
    if cat == "Pneumothorax":
        maps.markings *= 1.0 - np.clip(profile.p * 1.2, 0.0, 1.0)
        maps.density -= np.float32(rng.uniform(0.04, 0.06)) * profile.p
        maps.density += np.float32(rng.uniform(0.07, 0.1)) * profile.pleural_line
        if spec.size != "small" and profile.collapsed is not None:
            maps.density += np.float32(0.03) * profile.collapsed
        return
    cells = 60 if cat == "Edema" else 30
    texture = 1.0 + np.float32(_TEXTURE[cat]) * smooth_noise(rng, frame.height, frame.width, cells)
    amp = np.float32(rng.uniform(*_AMPLITUDE[cat]))
    maps.density += amp * profile.p * np.clip(texture, 0.4, 1.6)
    if cat in ("Consolidation", "Pneumonia", "Pleural Effusion"):
        maps.markings *= 1.0 - 0.7 * profile.p  # dense fluid hides the vessels

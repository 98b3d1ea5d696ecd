"""Per-patient chest anatomy and its rendering as a projection "density" image.

Everything is drawn in a patient coordinate frame: `x` runs across the thorax (the patient's RIGHT
is on the image LEFT, x < 0, as on every PA/AP radiograph), `y` runs down, one unit is about half
the thoracic width and the lung apices sit near y = -1. A small rotation, a shift and the image's
own aspect map this frame to pixels, so the same formulas serve any image size. Densities add up
like attenuation (0 = air outside the body, about 0.5 = soft tissue); exposure, noise and
detector blur are applied at the end (`expose`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

SIDES = ("right", "left")
# Sign of x for the patient's side: the patient's right lies on the image left (x < 0).
SIDE_SIGN = {"right": -1.0, "left": 1.0}


@dataclass(frozen=True)
class LungShape:
    """One lung field in side-local coordinates (l = distance from the midline, outward; y down)."""

    medial: float  # medial border (hidden by the mediastinum)
    lateral: float  # lateral border at the base
    apex: float  # y of the apex
    dome: float  # y of the top of the hemidiaphragm dome
    dome_peak: float  # l where the dome is highest
    cp_drop: float  # how far the costophrenic angle lies below the dome top

    def level(self, lat: np.ndarray, y: np.ndarray, scale: float = 1.0, anchor: tuple[float, float] | None = None
              ) -> np.ndarray:
        """Approximate signed distance to the lung border (> 0 inside), in patient units.

        `scale` < 1 with `anchor` gives the same lung shrunk towards `anchor` (a collapsed lung).
        """
        if anchor is not None and scale != 1.0:
            lat = anchor[0] + (lat - anchor[0]) / scale
            y = anchor[1] + (y - anchor[1]) / scale
        half = (self.lateral - self.medial) / 2.0
        grow = np.clip((y - self.apex) / (self.dome - self.apex), 0.0, 1.0)
        a_y = half * (0.62 + 0.38 * np.sqrt(grow))
        centre = self.medial + a_y
        round_h = 0.55
        top = self.apex + round_h
        ell = ((lat - centre) / a_y) ** 2 + (np.maximum(top - y, 0.0) / round_h) ** 2
        level_side = (1.0 - ell) * (0.5 * a_y)
        span_out = max(self.lateral - self.dome_peak, 1e-3)
        span_in = max(self.dome_peak - self.medial, 1e-3)
        rel = np.where(lat >= self.dome_peak, (lat - self.dome_peak) / span_out,
                       0.35 * (self.dome_peak - lat) / span_in)
        dome_y = self.dome + self.cp_drop * rel**2
        level_dome = dome_y - y
        out = np.minimum(level_side, level_dome)
        if anchor is not None and scale != 1.0:
            out = out * scale
        return out.astype(np.float32, copy=False)

    def dome_y(self, lat: float) -> float:
        """y of the hemidiaphragm at side-local position `lat` (for placing basal findings)."""
        if lat >= self.dome_peak:
            rel = (lat - self.dome_peak) / max(self.lateral - self.dome_peak, 1e-3)
        else:
            rel = 0.35 * (self.dome_peak - lat) / max(self.dome_peak - self.medial, 1e-3)
        return float(self.dome + self.cp_drop * rel**2)


@dataclass(frozen=True)
class PatientAnatomy:
    """What stays the same for one patient across studies (body habitus, lungs, heart, bones)."""

    habitus: float
    lungs: dict[str, LungShape]
    ctr: float  # cardiothoracic ratio of the normal heart
    heart_x: float
    heart_height: float
    mediastinum: float
    aortic_knob: float
    rib_spacing: float
    rib_phase: float
    rib_strength: float
    clavicle_y: float
    soft_tissue: float
    female: bool
    gastric_bubble: bool
    age: int

    @staticmethod
    def sample(rng: np.random.Generator) -> PatientAnatomy:
        medial = rng.uniform(0.1, 0.15)
        dome_r = rng.uniform(0.38, 0.52)
        lungs = {}
        for side in SIDES:
            dome = dome_r + (rng.uniform(0.03, 0.1) if side == "left" else 0.0)
            lungs[side] = LungShape(
                medial=medial + (0.04 if side == "left" else 0.0),
                lateral=rng.uniform(0.84, 0.94), apex=rng.uniform(-1.02, -0.9), dome=dome,
                dome_peak=rng.uniform(0.38, 0.52), cp_drop=rng.uniform(0.12, 0.22),
            )
        return PatientAnatomy(
            habitus=rng.uniform(0.88, 1.06), lungs=lungs, ctr=rng.uniform(0.38, 0.48),
            heart_x=rng.uniform(0.1, 0.16), heart_height=rng.uniform(0.4, 0.48),
            mediastinum=rng.uniform(0.14, 0.19), aortic_knob=rng.uniform(0.03, 0.08),
            rib_spacing=rng.uniform(0.15, 0.18), rib_phase=rng.uniform(0.0, 1.0),
            rib_strength=rng.uniform(0.04, 0.07), clavicle_y=rng.uniform(-1.08, -0.98),
            soft_tissue=rng.uniform(0.46, 0.56), female=bool(rng.random() < 0.5),
            gastric_bubble=bool(rng.random() < 0.6), age=int(rng.integers(21, 92)),
        )


@dataclass
class Frame:
    """Pixel grid of one image mapped to patient coordinates (rotation, shift, scale)."""

    height: int
    width: int
    x: np.ndarray
    y: np.ndarray
    scale: float  # pixels per patient unit
    cx: float = 0.0
    cy: float = 0.0
    theta: float = 0.0

    @staticmethod
    def make(height: int, width: int, habitus: float, rng: np.random.Generator, max_rotation_deg: float = 4.0
             ) -> Frame:
        scale = 0.4 * width * habitus * rng.uniform(0.95, 1.03)
        cx = width / 2.0 + rng.uniform(-0.04, 0.04) * width
        cy = 0.1 * height + 1.05 * scale + rng.uniform(-0.03, 0.03) * height
        theta = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
        rows = (np.arange(height, dtype=np.float32) - cy)[:, None]
        cols = (np.arange(width, dtype=np.float32) - cx)[None, :]
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        x = (cols * c + rows * s) / np.float32(scale)
        y = (rows * c - cols * s) / np.float32(scale)
        return Frame(height, width, x.astype(np.float32), y.astype(np.float32), float(scale), cx, cy, float(theta))

    def to_pixel(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the patient point (x, y), clipped to the image."""
        c, s = np.cos(self.theta), np.sin(self.theta)
        col = self.cx + self.scale * (x * c - y * s)
        row = self.cy + self.scale * (x * s + y * c)
        return int(np.clip(round(row), 0, self.height - 1)), int(np.clip(round(col), 0, self.width - 1))

    def local(self, side: str) -> np.ndarray:
        """Side-local lateral coordinate: distance from the midline towards that side's chest wall."""
        return self.x * np.float32(SIDE_SIGN[side])

    def soft(self, level: np.ndarray, edge_px: float = 1.5) -> np.ndarray:
        """Soft indicator of `level > 0` with an edge about `edge_px` pixels wide."""
        return np.clip(level * np.float32(self.scale / (2 * edge_px)) + 0.5, 0.0, 1.0)


@dataclass
class FrontalMaps:
    """The rendered frontal anatomy and the fields that findings are placed and clipped with."""

    frame: Frame
    density: np.ndarray
    markings: np.ndarray  # lung markings (vessels), added after findings remove them (pneumothorax)
    lung_level: dict[str, np.ndarray]
    lung_visible: np.ndarray  # lung field not hidden by heart or mediastinum, in [0, 1]
    heart_level: np.ndarray
    heart_ctr: float
    anatomy: PatientAnatomy
    extras: dict[str, float] = field(default_factory=dict)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Band-limited noise (zero mean, unit-ish variance) with about `cells` features per side."""
    gh = max(2, round(cells * height / max(height, width))) + 3
    gw = max(2, round(cells * width / max(height, width))) + 3
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _radial_ridges(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Vessel-like lines radiating from a hilum at (0, 0) and thinning towards the periphery."""
    angle_bins, radius_bins = 72, 8
    grid = rng.standard_normal((angle_bins + 1, radius_bins + 2)).astype(np.float32)
    grid[-1] = grid[0]  # wrap around in angle
    radius = np.sqrt(dx * dx + dy * dy)
    angle = (np.arctan2(dy, dx) + np.pi) * np.float32(angle_bins / (2 * np.pi))
    rpos = np.clip(radius * np.float32(radius_bins / 1.4), 0, radius_bins)
    value = ndimage.map_coordinates(grid, [angle.ravel(), rpos.ravel()], order=1, mode="nearest")
    value = value.reshape(dx.shape)
    width = np.float32(2.2) + radius * np.float32(3.0)
    ridge = np.clip(1.0 - np.abs(value) * width, 0.0, 1.0) ** 2
    return (ridge * np.exp(-radius / np.float32(0.9))).astype(np.float32)


def _band(distance: np.ndarray, half_width: float) -> np.ndarray:
    return np.clip(1.0 - (distance / np.float32(half_width)) ** 2, 0.0, 1.0)


def render_frontal(anatomy: PatientAnatomy, frame: Frame, rng: np.random.Generator, ctr: float | None = None,
                   ap: bool = False) -> FrontalMaps:
    """Render body, lungs, heart, mediastinum, diaphragm, clavicles, ribs and lung markings."""
    x, y = frame.x, frame.y
    f32 = np.float32
    lungs = anatomy.lungs
    # Body outline: trunk, shoulders/axillae and neck; soft tissue thickest in the middle.
    trunk = f32(1.04) + f32(0.1) * np.sqrt(np.clip(y + 1.0, 0.0, 1.0))
    neck_to_shoulder = _smoothstep((y + 1.5) / 0.35)
    shoulder_to_trunk = _smoothstep((y + 0.98) / 0.25)
    body_half = (f32(0.34) + f32(1.3) * neck_to_shoulder) * (1 - shoulder_to_trunk) + trunk * shoulder_to_trunk
    rel = np.clip(1.0 - (x / body_half) ** 2, 0.0, 1.0)
    body = np.sqrt(rel) * f32(anatomy.soft_tissue)
    body *= frame.soft((body_half - np.abs(x)), 2.0)
    density = body
    # Breast shadows over the lower lateral lung fields.
    if anatomy.female:
        for side in SIDES:
            lat = frame.local(side)
            d = ((lat - 0.6) / 0.45) ** 2 + ((y - (lungs[side].dome + 0.1)) / 0.3) ** 2
            density += f32(0.06) * np.clip(1.2 - d, 0.0, 1.0) * (y < lungs[side].dome + 0.25)
    # Lungs.
    lung_level = {side: lungs[side].level(frame.local(side), y) for side in SIDES}
    lung_soft = np.maximum(frame.soft(lung_level["right"]), frame.soft(lung_level["left"]))
    # Heart: a tilted super-ellipse sitting on the left hemidiaphragm, wider to the patient's left.
    thorax = lungs["right"].lateral + lungs["left"].lateral
    ratio = anatomy.ctr if ctr is None else ctr
    if ap and ctr is None:
        ratio = min(ratio * 1.08, 0.52)  # AP magnifies the heart, but a normal one stays normal
    heart_w = ratio * thorax
    hx = anatomy.heart_x * heart_w / 0.8
    base = lungs["left"].dome + 0.05
    hb = anatomy.heart_height * (0.8 + 0.45 * heart_w / thorax)
    hy = base - 0.5 * hb
    tilt = np.deg2rad(-12.0)
    dx, dy = x - f32(hx), y - f32(hy)
    u = dx * f32(np.cos(tilt)) + dy * f32(np.sin(tilt))
    v = -dx * f32(np.sin(tilt)) + dy * f32(np.cos(tilt))
    ha = heart_w / 2.0 / 1.0
    e = (np.abs(u) / f32(ha)) ** 2.3 + (np.abs(v) / f32(hb)) ** 2.3
    heart_level = np.minimum((1.0 - e) * f32(0.5 * min(ha, hb)), f32(base) - y).astype(np.float32)
    heart = frame.soft(heart_level, 1.5)
    # Mediastinum with the aortic knob on the patient's left, trachea, spine.
    top_med = hy - 0.6 * hb
    w_med = f32(anatomy.mediastinum) + f32(0.05) * np.clip(y + 0.4, 0.0, 1.0)
    knob = f32(anatomy.aortic_knob) * np.exp(-(((y + 0.5) / 0.1) ** 2))
    med_level = np.minimum(np.where(x < 0, w_med + x, w_med + knob - x), f32(top_med + 0.3) - y)
    med = frame.soft(med_level, 2.0)
    lung_visible = lung_soft * (1.0 - heart) * (1.0 - med)
    density += f32(0.03) * heart + f32(0.04) * med
    density -= f32(0.33) * lung_visible
    trachea_x = 0.01
    trachea = _band(x - f32(trachea_x), 0.045) * frame.soft(f32(-0.42) - y, 3.0) * (y > -1.7)
    density -= f32(0.1) * trachea
    spine = _band(x, 0.085) * (0.85 + 0.15 * np.cos(2 * np.pi * y / 0.13).astype(np.float32))
    density += f32(0.1) * spine
    # Liver under the right dome, gastric bubble under the left.
    right_dome = lungs["right"].dome
    density += f32(0.04) * frame.soft(y - f32(right_dome + 0.12), 6.0) * frame.soft(f32(0.3) - x, 12.0)
    if anatomy.gastric_bubble:
        gx, gy = 0.45, lungs["left"].dome + rng.uniform(0.1, 0.16)
        bubble = ((x - gx) / 0.16) ** 2 + ((y - gy) / 0.07) ** 2
        density -= f32(0.12) * np.clip(1.5 * (1.0 - bubble), 0.0, 1.0) * (y > lungs["left"].dome + 0.04)
    # Clavicles and ribs (posterior ribs strong, anterior ribs faint).
    for side in SIDES:
        lat = frame.local(side)
        clav_y = anatomy.clavicle_y - 0.22 * lat + 0.1 * lat**2
        ends = np.clip((lat - 0.06) / 0.05, 0.0, 1.0) * np.clip((1.0 - lat) / 0.08, 0.0, 1.0)
        density += f32(0.16) * _band(y - clav_y, 0.045) * ends
        rib_zone = (frame.soft(f32(lungs[side].lateral + 0.12) - lat, 4.0) * np.clip((lat - 0.06) / 0.06, 0.0, 1.0)
                    * frame.soft(f32(lungs[side].dome + 0.2) - y, 6.0) * frame.soft(y + f32(1.25), 6.0))
        phase = (y + 0.25 * lat - 0.6 * lat**2) / anatomy.rib_spacing + anatomy.rib_phase
        posterior = np.clip((np.cos(2 * np.pi * phase) - 0.1) * 1.6, 0.0, 1.0) ** 0.7
        phase_a = (y - 0.4 * lat) / (anatomy.rib_spacing * 1.2) + anatomy.rib_phase * 0.7
        anterior = np.clip((np.cos(2 * np.pi * phase_a) - 0.3) * 1.4, 0.0, 1.0)
        density += (f32(anatomy.rib_strength) * posterior + f32(0.025) * anterior) * rib_zone
    # Lung markings: vessel-like ridges of band-limited noise, denser towards the hila.
    ridges = np.zeros_like(x)
    for side in SIDES:
        lat = frame.local(side)
        ridges = np.maximum(ridges, _radial_ridges(rng, lat - f32(0.22), y + f32(0.05)) * (lat > 0))
    fine = smooth_noise(rng, frame.height, frame.width, 90)
    markings = (f32(0.1) * ridges + f32(0.012) * fine) * lung_visible
    return FrontalMaps(frame, density.astype(np.float32), markings.astype(np.float32), lung_level, lung_visible,
                       heart_level, float(heart_w / thorax), anatomy)


def render_lateral(anatomy: PatientAnatomy, frame: Frame, rng: np.random.Generator) -> np.ndarray:
    """A lateral view: anterior on the image left, spine posterior, heart anterior and low."""
    x, y = frame.x, frame.y
    f32 = np.float32
    body = np.sqrt(np.clip(1.0 - (x / 1.05) ** 2, 0.0, 1.0)) * f32(anatomy.soft_tissue + 0.1)
    body *= frame.soft(f32(1.05) - np.abs(x), 2.0)
    dome = anatomy.lungs["right"].dome + 0.05 + 0.12 * (x + 0.2) ** 2
    lung_level = np.minimum((1.0 - ((x + 0.02) / 0.8) ** 2 - (np.maximum(-0.4 - y, 0.0) / 0.6) ** 2) * 0.4,
                            dome - y)
    lung = frame.soft(lung_level.astype(np.float32), 2.0)
    heart = frame.soft(((1.0 - ((x + 0.35) / 0.38) ** 2 - ((y - 0.15) / 0.35) ** 2) * 0.3).astype(np.float32), 2.0)
    spine_x = 0.72
    spine = _band(x - f32(spine_x), 0.12) * (0.8 + 0.2 * np.cos(2 * np.pi * y / 0.14))
    sternum = _band(x + f32(0.9), 0.03) * (y > -0.8) * (y < 0.4)
    arms = frame.soft(f32(-0.75) - y, 8.0) * f32(0.12)
    density = body - f32(0.3) * lung * (1 - heart) + f32(0.06) * heart + f32(0.12) * spine + f32(0.08) * sternum
    density += arms
    n = smooth_noise(rng, frame.height, frame.width, 28)
    density += f32(0.04) * np.clip(1.0 - np.abs(n) * 1.6, 0.0, 1.0) ** 3 * lung
    return density.astype(np.float32)


@dataclass(frozen=True)
class Exposure:
    """Display window, gamma, quantum noise and detector blur of one image."""

    low: float
    high: float
    gamma: float
    noise: float
    blur_px: float
    full_scale: float

    @staticmethod
    def sample(rng: np.random.Generator, ap: bool) -> Exposure:
        return Exposure(
            low=rng.uniform(-0.03, 0.03), high=rng.uniform(0.72, 0.9) - (0.04 if ap else 0.0),
            gamma=rng.uniform(0.8, 1.25), noise=rng.uniform(0.008, 0.025) * (1.3 if ap else 1.0),
            blur_px=rng.uniform(0.5, 1.0), full_scale=rng.uniform(0.8, 1.0),
        )


def expose(density: np.ndarray, exposure: Exposure, rng: np.random.Generator, size_ref: int) -> np.ndarray:
    """Map density to 12-bit detector values (0..4095, bright = dense), with blur and noise."""
    scale = size_ref / 512.0
    image = ndimage.gaussian_filter(density, exposure.blur_px * scale, mode="nearest")
    image = np.clip((image - exposure.low) / (exposure.high - exposure.low), 0.0, 1.0) ** exposure.gamma
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(exposure.noise)
    values = np.clip(image, 0.0, 1.0) * np.float32(4095 * exposure.full_scale)
    return np.rint(values).astype(np.uint16)

"""Procedural faces driven by facial action units (FACS), rendered with vectorised numpy.

A clip is rendered in one pass over all its frames: every array below is `[T, H, W]` (masks,
face coordinates) or `[T, H, W, 3]` (colour, float32 in 0..1), and every per-frame parameter
is `[T, 1, 1]` so that it broadcasts over the pixels. Shapes are drawn as signed distances over
a coordinate grid (negative inside) turned into anti-aliased coverage, never per-pixel loops.

Coordinates: the image spans [-1, 1] on both axes (x right, y down). The face lives in its own
frame (u right, v down, origin at the face centre, face half-height about 0.72); head pose
(translation, roll, scale) maps image to face coordinates, and yaw shifts the inner features.

Action units (intensity 0..1 per frame) and what they do to the drawing:

=====  =====================  ================================================================
AU     FACS name              drawn as
=====  =====================  ================================================================
AU1    inner brow raiser      inner brow ends up (oblique brows); forehead wrinkles
AU2    outer brow raiser      outer brow ends up; forehead wrinkles
AU4    brow lowerer           brows down and drawn together; vertical lines between the brows
AU5    upper lid raiser       upper lid opens wider (white shows above the iris)
AU6    cheek raiser           lower lid pushed up, cheeks lifted and flushed, crow's feet
AU7    lid tightener          both lids narrowed
AU9    nose wrinkler          lines across the nose bridge, nostrils flare and lift, upper lip up
AU12   lip corner puller      mouth corners up and out (smile), deeper nasolabial folds
AU15   lip corner depressor   mouth corners down
AU16   lower lip depressor    lower lip pulled down (mouth parts a little)
AU20   lip stretcher          mouth stretched wide and flat, lips thinner
AU23   lip tightener          lips thin and narrow
AU24   lip presser            lips pressed thin
AU26   jaw drop               mouth open (dark interior, upper teeth), chin lower
AU45   blink                  both lids closed (nuisance only, class-independent)
=====  =====================  ================================================================

Emotion prototypes (`EMOTION_AUS`), from the FACS/EMFACS literature (Ekman & Friesen):

==========  ===========================================  ==================================
Emotion     action units (weight at apex)                 notes
==========  ===========================================  ==================================
Happiness   AU6 (1.0) + AU12 (1.0)                        Duchenne smile; a per-clip "open
                                                          smile" factor parts the lips
Sadness     AU1 (1.0) + AU4 (0.6) + AU15 (1.0)
Surprise    AU1 (1.0) + AU2 (1.0) + AU5 (1.0) + AU26 (1.0)
Fear        AU1 (1.0) + AU2 (0.8) + AU4 (0.7) + AU5 (1.0)
            + AU20 (1.0) + AU26 (0.6)
Anger       AU4 (1.0) + AU5 (0.6) + AU7 (1.0) + AU23 (1.0)
            + AU24 (0.5)
Disgust     AU9 (1.0) + AU15 (0.8) + AU16 (0.8)
Neutral     none                                          the resting face
==========  ===========================================  ==================================

Everything that is not the expression (identity: face shape, skin tone, hair, feature
placement, glasses; head motion; lighting; background clutter; sensor noise) is drawn from the
clip's own random generator, independent of the label, so no single pixel gives the class away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import CLASSES

AUS: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU15", "AU16", "AU20", "AU23", "AU24", "AU26", "AU45",
)
NUM_AUS = len(AUS)
_A = {name: i for i, name in enumerate(AUS)}

EMOTION_AUS: dict[str, dict[str, float]] = {
    "Happiness": {"AU6": 1.0, "AU12": 1.0},
    "Sadness": {"AU1": 1.0, "AU4": 0.6, "AU15": 1.0},
    "Neutral": {},
    "Anger": {"AU4": 1.0, "AU5": 0.6, "AU7": 1.0, "AU23": 1.0, "AU24": 0.5},
    "Surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0},
    "Disgust": {"AU9": 1.0, "AU15": 0.8, "AU16": 0.8},
    "Fear": {"AU1": 1.0, "AU2": 0.8, "AU4": 0.7, "AU5": 1.0, "AU20": 1.0, "AU26": 0.6},
}


def emotion_aus(label: int) -> np.ndarray:
    """Apex action-unit vector of class `label` (0-based, DFEW order).  # [A] float32"""
    vec = np.zeros(NUM_AUS, np.float32)
    for name, weight in EMOTION_AUS[CLASSES[label]].items():
        vec[_A[name]] = weight
    return vec


# ---------------------------------------------------------------------------------------------
# Random draws: identity, scene, motion, expression tracks
# ---------------------------------------------------------------------------------------------

_HAIR = np.array(
    [  # black, dark brown, brown, blond, red, grey
        [0.07, 0.05, 0.04], [0.22, 0.13, 0.07], [0.42, 0.27, 0.13],
        [0.80, 0.65, 0.38], [0.55, 0.22, 0.09], [0.62, 0.62, 0.60],
    ],
    np.float32,
)
_SKIN_LIGHT = np.array([0.97, 0.82, 0.70], np.float32)
_SKIN_DARK = np.array([0.40, 0.26, 0.17], np.float32)


@dataclass(frozen=True)
class Identity:
    """Who is in the clip: face shape, colours and feature placement (face units)."""

    face_w: float  # face half-width
    face_h: float  # face half-height
    jaw: float  # chin width relative to the cheeks (1 = oval)
    skin: np.ndarray  # [3] skin albedo
    hair: np.ndarray  # [3] hair colour
    hairline: float  # v of the hairline at the centre
    bald: bool  # no hair on top
    long_hair: bool  # hair falling behind the face
    clothes: np.ndarray  # [3] shirt colour
    eye_y: float  # v of the eye centres
    eye_dx: float  # |u| of the eye centres
    eye_w: float  # eye half-width
    eye_h: float  # upper-lid height at rest
    iris: np.ndarray  # [3] iris colour
    brow_gap: float  # distance brow-eye at rest
    brow_th: float  # brow thickness
    brow_arch: float  # brow arch height
    nose_y: float  # v of the nostrils
    nose_w: float  # nose half-width
    mouth_y: float  # v of the lip line
    mouth_w: float  # mouth half-width at rest
    lip_t: float  # lip thickness
    lips: np.ndarray  # [3] lip colour
    glasses: bool  # wears glasses
    open_smile: float  # how far a smile parts the lips (0..1)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a random identity (independent of any label)."""
    u = rng.uniform
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * u() + rng.normal(0, 0.02, 3).astype(np.float32)
    hair = _HAIR[rng.integers(len(_HAIR))] * u(0.8, 1.2) + rng.normal(0, 0.02, 3).astype(np.float32)
    face_w = u(0.48, 0.60)
    return Identity(
        face_w=face_w, face_h=u(0.64, 0.76), jaw=u(0.72, 0.95),
        skin=np.clip(skin, 0, 1), hair=np.clip(hair, 0, 1), hairline=u(-0.50, -0.36),
        bald=bool(u() < 0.12), long_hair=bool(u() < 0.45), clothes=rng.uniform(0.05, 0.95, 3).astype(np.float32),
        eye_y=u(-0.17, -0.08), eye_dx=face_w * u(0.36, 0.44), eye_w=u(0.085, 0.11), eye_h=u(0.036, 0.05),
        iris=np.array([0.25, 0.17, 0.10], np.float32) * u(0.5, 1.6) + rng.uniform(0, 0.15, 3).astype(np.float32),
        brow_gap=u(0.075, 0.10), brow_th=u(0.02, 0.034), brow_arch=u(0.0, 0.025),
        nose_y=u(0.11, 0.18), nose_w=u(0.05, 0.075),
        mouth_y=u(0.32, 0.40), mouth_w=u(0.13, 0.17), lip_t=u(0.02, 0.032),
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55], np.float32) + np.array([0.08, 0.0, 0.0], np.float32), 0, 1),
        glasses=bool(u() < 0.15), open_smile=u(),
    )


@dataclass(frozen=True)
class Scene:
    """Everything around the face: background image, light, camera colour, noise."""

    background: np.ndarray  # [H, W, 3] float32
    light: np.ndarray  # [3] unit light direction (x, y, towards camera)
    ambient: float  # share of ambient light on the head
    tint: np.ndarray  # [3] camera white balance
    noise: float  # std of the per-pixel (luminance) noise


def sample_scene(rng: np.random.Generator, size: int, clutter: int, noise: float) -> Scene:
    """Draw a cluttered background and lighting for one clip."""
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.7, 0.3), rng.uniform(0.5, 1.0)], np.float32)
    return Scene(
        background=_background(rng, size, clutter),
        light=light / np.linalg.norm(light),
        ambient=rng.uniform(0.35, 0.6),
        tint=rng.uniform(0.88, 1.12, 3).astype(np.float32),
        noise=rng.uniform(0.25, 1.0) * noise,
    )


def _background(rng: np.random.Generator, size: int, clutter: int) -> np.ndarray:
    """Gradient + low-frequency texture + random shapes.  # [H, W, 3] float32"""
    x, y = _grid(size)
    c0, c1 = rng.uniform(0.1, 0.9, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + 0.5 * (np.cos(angle) * x + np.sin(angle) * y), 0, 1)[..., None]
    bg = c0 + (c1 - c0) * ramp
    grid = 6
    up = _upsample_matrix(grid, size)  # [H, g]
    coarse = rng.normal(0, 0.07, (grid, grid, 3)).astype(np.float32)
    bg = bg + np.stack([up @ coarse[..., c] @ up.T for c in range(3)], axis=-1)
    px = 2.0 / size
    for _ in range(int(rng.integers(0, clutter + 1))):
        cx, cy = rng.uniform(-1, 1, 2)
        a, b = rng.uniform(0.05, 0.45, 2)
        if rng.random() < 0.5:
            d = (np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2) - 1) * min(a, b)
        else:
            d = np.maximum(np.abs(x - cx) - a, np.abs(y - cy) - b)
        m = _cover(d, px)[..., None] * rng.uniform(0.4, 1.0)
        bg += (rng.uniform(0, 1, 3).astype(np.float32) - bg) * m
    return np.clip(bg, 0, 1).astype(np.float32)


def _upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear interpolation weights from n_in samples to n_out pixels.  # [n_out, n_in]"""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.floor(pos).astype(int).clip(0, n_in - 2)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


@dataclass(frozen=True)
class Motion:
    """Per-frame head pose and camera parameters, each [T] float32."""

    cx: np.ndarray  # face centre x (image units)
    cy: np.ndarray  # face centre y
    roll: np.ndarray  # in-plane rotation (radians)
    scale: np.ndarray  # face size factor
    yaw: np.ndarray  # left/right turn (-1..1), shifts the inner features
    gaze: np.ndarray  # iris offset (face units)
    gain: np.ndarray  # exposure flicker


def _wave(rng: np.random.Generator, n: int, amp: float) -> np.ndarray:
    """Smooth random motion: two slow sinusoids with random frequency and phase.  # [n]"""
    t = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    for _ in range(2):
        f, phase = rng.uniform(0.01, 0.08), rng.uniform(0, 2 * np.pi)
        out += np.sin(2 * np.pi * f * t + phase).astype(np.float32) * rng.uniform(0.3, 0.5)
    return amp * out


def sample_motion(rng: np.random.Generator, n: int, jitter: float) -> Motion:
    """Head pose: a random resting pose per clip plus smooth per-frame movement, both scaled by `jitter`.

    At jitter 1 the head stays roughly centred and fills the frame, like the face-aligned crops
    of DFEW (`clip_224x224`); jitter 0 gives a still, centred, upright face.
    """
    j = jitter
    return Motion(
        cx=rng.uniform(-0.04, 0.04) * j + _wave(rng, n, 0.02 * j),
        cy=rng.uniform(-0.03, 0.05) * j + _wave(rng, n, 0.015 * j),
        roll=np.deg2rad(rng.uniform(-5, 5) * j) + _wave(rng, n, np.deg2rad(2.5) * j),
        scale=1.15 * (1 + rng.uniform(-0.06, 0.06) * j) * (1 + _wave(rng, n, 0.015 * j)),
        yaw=rng.uniform(-0.3, 0.3) * j + _wave(rng, n, 0.2 * j),
        gaze=rng.uniform(-0.015, 0.015) + _wave(rng, n, 0.02),
        gain=1 + _wave(rng, n, 0.04),
    )


def expression_track(
    rng: np.random.Generator, label_aus: np.ndarray, intensity: np.ndarray, other_aus: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """Per-frame action units of a clip.  # [T, A] float32

    `label_aus`/`other_aus` are apex prototypes ([A]); `intensity`/`other` their per-frame
    strengths ([T]). A per-clip variation of each prototype, a mild resting expression, small
    per-frame twitches and random blinks are added; none of them depends on the label.
    """
    n = len(intensity)
    style = rng.uniform(0.8, 1.15, NUM_AUS).astype(np.float32)  # how this person performs each AU
    rest = np.zeros(NUM_AUS, np.float32)
    rest[rng.choice(NUM_AUS - 1, size=2, replace=False)] = rng.uniform(0, 0.15, 2)
    aus = rest + intensity[:, None] * (label_aus * style) + other[:, None] * (other_aus * style)
    aus += np.stack([_wave(rng, n, 0.04) for _ in range(NUM_AUS)], axis=1)
    blink = np.zeros(n, np.float32)
    for t in rng.choice(n, size=rng.poisson(n / 45.0), replace=True):
        blink[t] = 1.0
        blink[max(t - 1, 0)] = max(blink[max(t - 1, 0)], 0.6)
        blink[min(t + 1, n - 1)] = max(blink[min(t + 1, n - 1)], 0.6)
    aus[:, _A["AU45"]] = blink
    return np.clip(aus, 0, 1.2).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1].  # x, y: [H, W] float32"""
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    x, y = np.meshgrid(c, c)
    return x, y


def _cover(d: np.ndarray, px: float) -> np.ndarray:
    """Signed distance -> anti-aliased coverage in 0..1 (edge one pixel wide)."""
    m = d * np.float32(-1.0 / px)
    m += 0.5
    return np.clip(m, 0.0, 1.0, out=m)


def _ellipse(u, v, cx, cy, a, b):
    """Approximate signed distance to an axis-aligned ellipse."""
    du, dv = (u - cx) / a, (v - cy) / b
    du *= du
    dv *= dv
    du += dv
    return (np.sqrt(du, out=du) - 1.0) * np.minimum(a, b)


def _segment(u, v, x0, y0, x1, y1, half_width):
    """Signed distance to a capsule (segment with rounded ends)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.sqrt((u - x0 - t * dx) ** 2 + (v - y0 - t * dy) ** 2) - half_width


class _Canvas:
    """A clip's frames plus face coordinates, painted one shape at a time inside bounding boxes."""

    def __init__(self, background: np.ndarray, motion: Motion, size: int):
        n = len(motion.cx)
        self.size, self.m = size, motion
        # planar colour [3, T, H, W]: blending one contiguous plane at a time is much faster
        # in numpy than broadcasting over a trailing axis of length 3
        self.img = np.repeat(np.ascontiguousarray(background.transpose(2, 0, 1))[:, None], n, axis=1)
        self.head = np.zeros((n, size, size), np.float32)  # head coverage, for the shading
        x, y = _grid(size)
        p = lambda a: a[:, None, None].astype(np.float32)  # noqa: E731  [T] -> [T, 1, 1]
        self.cos, self.sin, self.s = np.cos(motion.roll), np.sin(motion.roll), motion.scale
        dx, dy = x[None] - p(motion.cx), y[None] - p(motion.cy)
        self.u = (p(self.cos) * dx + p(self.sin) * dy) / p(self.s)  # [T, H, W]
        self.v = (-p(self.sin) * dx + p(self.cos) * dy) / p(self.s)  # [T, H, W]
        self.px = float(2.0 / size / motion.scale.mean())  # one pixel in face units

    def box(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Pixel rows/cols covering face-rectangle [u0,u1]x[v0,v1] in every frame (plus margin)."""
        us = np.array([u0, u1, u0, u1])[None] + np.array([-0.06, 0.06, -0.06, 0.06])[None]
        vs = np.array([v0, v0, v1, v1])[None] + np.array([-0.04, -0.04, 0.04, 0.04])[None]
        c, s, k = self.cos[:, None], self.sin[:, None], self.s[:, None]
        xs = self.m.cx[:, None] + k * (c * us - s * vs)  # [T, 4]
        ys = self.m.cy[:, None] + k * (s * us + c * vs)
        to_px = lambda a, f: int(f((a + 1) / 2 * self.size))  # noqa: E731
        c0, c1 = max(to_px(xs.min(), np.floor) - 1, 0), min(to_px(xs.max(), np.ceil) + 1, self.size)
        r0, r1 = max(to_px(ys.min(), np.floor) - 1, 0), min(to_px(ys.max(), np.ceil) + 1, self.size)
        return slice(r0, max(r1, r0)), slice(c0, max(c1, c0))

    def uv(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates inside a box.  # u, v: [T, h, w]"""
        return self.u[:, box[0], box[1]], self.v[:, box[0], box[1]]

    def paint(self, box, d: np.ndarray, color, alpha=1.0, head: bool = False) -> None:
        """Blend `color` ([3]) where signed distance `d` ([T, h, w]) < 0."""
        m = _cover(d, self.px)
        if not np.isscalar(alpha) or alpha != 1.0:
            m *= alpha
        tmp = np.empty_like(m)
        for k, c in enumerate(np.asarray(color, np.float32)):
            plane = self.img[k, :, box[0], box[1]]  # a view: [T, h, w]
            np.subtract(plane, c, out=tmp)
            tmp *= m
            plane -= tmp
        if head:
            h = self.head[:, box[0], box[1]]
            np.maximum(h, m, out=h)

    def darken(self, box, d: np.ndarray, amount) -> None:
        """Multiply the image by (1 - amount) where `d` < 0 (creases, shadows)."""
        keep = 1.0 - _cover(d, self.px) * amount
        for k in range(3):
            self.img[k, :, box[0], box[1]] *= keep


def render_clip(
    identity: Identity, scene: Scene, motion: Motion, aus: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw one clip.  aus: [T, A] -> frames [T, H, W, 3] uint8."""
    size = scene.background.shape[0]
    cv = _Canvas(scene.background, motion, size)
    au = {name: aus[:, i, None, None] for i, name in enumerate(AUS)}  # each [T, 1, 1]
    yaw = motion.yaw[:, None, None] * 0.07  # shift of the inner features (face units)
    _draw_body(cv, identity)
    _draw_head(cv, identity, au)
    _draw_creases(cv, identity, au, yaw)
    _draw_eyes(cv, identity, au, motion, yaw)
    _draw_brows(cv, identity, au, yaw)
    _draw_nose(cv, identity, au, yaw, scene.light)
    _draw_mouth(cv, identity, au, yaw)
    if identity.glasses:
        _draw_glasses(cv, identity, yaw)
    return _finish(cv, scene, motion, rng)


def _draw_body(cv: _Canvas, f: Identity) -> None:
    """Shoulders, neck and long hair behind the head."""
    b = cv.box(-1.4, 1.4, f.face_h * 0.6, f.face_h + 1.2)
    u, v = cv.uv(b)
    cv.paint(b, _ellipse(u, v, 0.0, f.face_h + 0.75, 1.1, 0.55), f.clothes, head=True)
    b = cv.box(-0.3, 0.3, 0.0, f.face_h + 0.4)
    u, v = cv.uv(b)
    neck = np.maximum(np.abs(u) - f.face_w * 0.45, _ellipse(u, v, 0.0, f.face_h * 0.6, f.face_w, f.face_h * 0.75))
    cv.paint(b, neck, f.skin * 0.82, head=True)
    if f.long_hair and not f.bald:
        b = cv.box(-f.face_w * 1.3, f.face_w * 1.3, -f.face_h * 1.25, f.face_h * 1.2)
        u, v = cv.uv(b)
        cv.paint(b, _ellipse(u, v, 0.0, 0.05, f.face_w * 1.25, f.face_h * 1.15), f.hair * 0.85, head=True)


def _draw_head(cv: _Canvas, f: Identity, au: dict) -> None:
    """Ears, the face oval (chin drops with AU26), hair on top, cheeks."""
    for side in (-1.0, 1.0):
        x = side * f.face_w * 0.96
        b = cv.box(x - 0.06, x + 0.06, f.eye_y - 0.04, f.eye_y + 0.18)
        u, v = cv.uv(b)
        cv.paint(b, _ellipse(u, v, x, f.eye_y + 0.07, 0.06, 0.11), f.skin * 0.9, head=True)
    b = cv.box(-f.face_w * 1.1, f.face_w * 1.1, -f.face_h * 1.1, f.face_h * 1.1)
    u, v = cv.uv(b)
    h = f.face_h + 0.05 * au["AU26"]
    w = f.face_w * (1 - (1 - f.jaw) * np.clip(v / h, 0, 1))
    face = (np.sqrt((u / w) ** 2 + (v / h) ** 2) - 1.0) * f.face_w
    cv.paint(b, face, f.skin, head=True)
    if not f.bald:
        top = np.maximum(
            _ellipse(u, v, 0.0, -0.02, f.face_w * 1.08, f.face_h * 1.07),
            v - (f.hairline + 0.22 * (u / f.face_w) ** 2),
        )
        cv.paint(b, top, f.hair, head=True)
    # cheeks: lifted and flushed by AU6 (and a little by a smile)
    lift = 0.035 * au["AU6"] + 0.015 * au["AU12"]
    b = cv.box(-f.eye_dx - 0.18, f.eye_dx + 0.18, f.nose_y - 0.12, f.nose_y + 0.12)
    u, v = cv.uv(b)
    cheeks = _ellipse(np.abs(u), v, f.eye_dx + 0.03, f.nose_y + 0.02 - lift, 0.11, 0.07)
    flush = np.clip(f.skin * np.array([1.05, 0.82, 0.8], np.float32), 0, 1)
    cv.paint(b, cheeks - 0.03, flush, alpha=0.1 + 0.35 * np.minimum(au["AU6"], 1.0))


def _crease(cv: _Canvas, rect: tuple[float, float, float, float], amount, shape, yaw) -> None:
    """Darken a crease drawn by `shape(|u - yaw|, v) -> distance` inside face rectangle `rect`."""
    amount = np.broadcast_to(amount, (len(cv.m.cx), 1, 1))
    if amount.max() < 1e-3:  # not visible in any frame: skip the pixel work
        return
    b = cv.box(*rect)
    u, v = cv.uv(b)
    cv.darken(b, shape(np.abs(u - yaw), v), amount)


def _draw_creases(cv: _Canvas, f: Identity, au: dict, yaw) -> None:
    """Wrinkles and folds that appear with the action units, as shadows on the skin."""
    brow_v = f.eye_y - f.brow_gap
    hw = 0.006

    def forehead(ua, v):  # three shallow arcs above the brows
        arcs = [np.abs(v - (brow_v - 0.07 - k * 0.045 + 0.12 * (ua / f.face_w) ** 2)) for k in range(3)]
        return np.maximum(np.minimum(np.minimum(arcs[0], arcs[1]), arcs[2]) - hw, ua - 0.28)

    def bridge(ua, v):  # short lines across the nose bridge
        lines = [np.abs(v - (f.eye_y + 0.03 + k * 0.03 - 0.02 * ua / 0.05)) for k in range(3)]
        return np.maximum(np.minimum(np.minimum(lines[0], lines[1]), lines[2]) - hw, ua - 0.045)

    ex = f.eye_dx + f.eye_w + 0.02

    def crow(ua, v):  # fans at the outer eye corners
        fans = [_segment(ua, v, ex, f.eye_y + dy * 0.4, ex + 0.045, f.eye_y + dy, hw) for dy in (-0.03, 0, 0.03)]
        return np.minimum(np.minimum(fans[0], fans[1]), fans[2])

    mw = f.mouth_w * (1 + 0.3 * au["AU12"] + 0.35 * au["AU20"])
    bend = mw * 0.85 + 0.04

    def fold(ua, v):  # nasolabial folds, nose wings -> beyond the mouth corners
        return np.minimum(
            _segment(ua, v, f.nose_w + 0.02, f.nose_y - 0.02, bend, f.mouth_y - 0.04, hw * 1.3),
            _segment(ua, v, bend, f.mouth_y - 0.04, mw + 0.03, f.mouth_y + 0.02, hw * 1.3),
        )

    glabella = lambda ua, v: _segment(ua, v, 0.022, brow_v - 0.04, 0.018, brow_v + 0.045, hw)  # noqa: E731
    raise_ = np.clip(0.7 * au["AU1"] + 0.5 * au["AU2"] - 0.15, 0, 1)
    _crease(cv, (-0.3, 0.3, brow_v - 0.2, brow_v - 0.02), 0.45 * raise_, forehead, yaw)
    _crease(cv, (-0.04, 0.04, brow_v - 0.05, brow_v + 0.06), 0.5 * np.clip(au["AU4"] - 0.1, 0, 1), glabella, yaw)
    _crease(cv, (-0.05, 0.05, f.eye_y, f.eye_y + 0.1), 0.55 * np.clip(au["AU9"] - 0.1, 0, 1), bridge, yaw)
    crow_depth = 0.4 * np.clip(au["AU6"] - 0.2, 0, 1)
    _crease(cv, (-ex - 0.06, ex + 0.06, f.eye_y - 0.05, f.eye_y + 0.05), crow_depth, crow, yaw)
    reach = f.mouth_w * 1.65 + 0.05
    depth = 0.08 + 0.4 * np.clip(np.maximum(au["AU12"], au["AU9"]), 0, 1)
    _crease(cv, (-reach, reach, f.nose_y - 0.04, f.mouth_y + 0.04), depth, fold, yaw)


def _almond(ex, ey, w, up, down):
    """Eye shape: upper and lower half-ellipses with their own heights (closed when 0)."""
    h = np.where(ey < 0, up, down) + 1e-4
    return (np.sqrt((ex / w) ** 2 + (ey / h) ** 2) - 1.0) * np.minimum(h, w)


def _draw_eyes(cv: _Canvas, f: Identity, au: dict, m: Motion, yaw) -> None:
    """Eyes: lid opening from AU5 (wider), AU6 (lower lid up), AU7 (narrow), AU45 (closed)."""
    b = cv.box(-f.eye_dx - f.eye_w - 0.05, f.eye_dx + f.eye_w + 0.05, f.eye_y - 0.12, f.eye_y + 0.1)
    u, v = cv.uv(b)
    side = np.sign(u - yaw)
    ex, ey = np.abs(u - yaw) - f.eye_dx, v - f.eye_y
    open_ = np.clip(1 - au["AU45"], 0, 1) * (1 - 0.45 * np.minimum(au["AU7"], 1))
    up = f.eye_h * (1 + 1.1 * au["AU5"]) * open_
    down = f.eye_h * 0.8 * np.clip(1 - 0.6 * au["AU6"], 0.15, 1) * open_
    cv.paint(b, _almond(ex, ey + 0.004, f.eye_w + 0.008, up + 0.01, down + 0.002), f.hair * 0.3)  # lashes and lid line
    sclera = _almond(ex, ey, f.eye_w, up, down)
    cv.paint(b, sclera, (0.93, 0.92, 0.88))
    gaze = m.gaze[:, None, None] * side
    r = f.eye_h * 1.05
    iris = np.sqrt((ex - gaze) ** 2 + (ey + 0.003) ** 2)
    cv.paint(b, np.maximum(iris - r, sclera), f.iris)
    cv.paint(b, np.maximum(iris - r * 0.45, sclera), (0.03, 0.03, 0.03))


def _draw_brows(cv: _Canvas, f: Identity, au: dict, yaw) -> None:
    """Brows: AU1 lifts the inner ends, AU2 the outer ends, AU4 lowers and knits them."""
    length = f.eye_w * 2.5
    b = cv.box(-f.eye_dx - length, f.eye_dx + length, f.eye_y - f.brow_gap - 0.15, f.eye_y)
    u, v = cv.uv(b)
    inner = f.eye_dx - f.eye_w * 1.25 - 0.02 * au["AU4"]
    t = (np.abs(u - yaw) - inner) / length
    tc = np.clip(t, 0, 1)
    line = (
        f.eye_y - f.brow_gap - f.brow_arch * 4 * tc * (1 - tc)
        - 0.09 * au["AU1"] * (1 - tc) ** 1.5 - 0.075 * au["AU2"] * tc
        + 0.04 * au["AU4"] + 0.03 * au["AU4"] * (1 - tc) + 0.012 * au["AU9"]
    )
    thick = f.brow_th * (1 - 0.45 * tc) / 2
    d = np.maximum(np.abs(v - line) - thick, (np.abs(t - 0.5) - 0.5) * length)
    cv.paint(b, d, f.hair * 0.75)


def _draw_nose(cv: _Canvas, f: Identity, au: dict, yaw, light: np.ndarray) -> None:
    """Nose: a shaded side, a tip highlight and nostrils that flare and lift with AU9."""
    b = cv.box(-f.nose_w - 0.06, f.nose_w + 0.06, f.eye_y, f.nose_y + 0.05)
    u, v = cv.uv(b)
    un = u - yaw * 1.5
    shade_side = -1.0 if light[0] > 0 else 1.0
    side = _segment(un * shade_side, v, f.nose_w * 0.55, f.eye_y + 0.07, f.nose_w * 0.9, f.nose_y - 0.035, 0.008)
    cv.darken(b, side, 0.25)
    cv.paint(b, _ellipse(un, v, 0.0, f.nose_y - 0.035, f.nose_w * 0.6, 0.035), np.clip(f.skin * 1.08, 0, 1), alpha=0.5)
    flare = 1 + 0.35 * au["AU9"]
    nostrils = _ellipse(np.abs(un), v, f.nose_w * 0.48 * flare, f.nose_y - 0.014 * au["AU9"], 0.022 * flare, 0.012)
    cv.paint(b, nostrils, f.skin * 0.35)


def _draw_mouth(cv: _Canvas, f: Identity, au: dict, yaw) -> None:
    """Mouth: corners up (AU12) or down (AU15), stretched (AU20), thin (AU23/24), open (AU26/AU16)."""
    b = cv.box(-f.mouth_w * 1.7, f.mouth_w * 1.7, f.mouth_y - 0.12, f.mouth_y + 0.2)
    u, v = cv.uv(b)
    ua = np.abs(u - yaw * 1.2)
    mw = f.mouth_w * (
        1 + 0.3 * au["AU12"] + 0.35 * au["AU20"] - 0.15 * au["AU23"] - 0.1 * au["AU24"] - 0.2 * au["AU26"]
    )
    xn = np.clip(ua / mw, 0, 1)
    corner = 0.08 * au["AU12"] - 0.06 * au["AU15"] - 0.012 * au["AU20"]
    center = f.mouth_y - corner * xn**2 - 0.012 * au["AU9"] * (1 - xn**2)
    lens = 1 - xn**2
    open_up = (0.016 * au["AU9"] + 0.012 * au["AU26"] + 0.012 * f.open_smile * au["AU12"]) * lens
    open_dn = 0.13 * au["AU26"] * np.sqrt(lens) + (0.035 * au["AU16"] + 0.03 * f.open_smile * au["AU12"]) * lens
    thin = np.clip(1 - 0.65 * np.maximum(au["AU23"], au["AU24"]) - 0.3 * au["AU20"], 0.2, 1)
    lip = f.lip_t * thin * np.sqrt(lens)
    top, bottom = center - open_up, center + open_dn
    side = ua - mw
    cv.paint(b, np.maximum.reduce([top - lip * 0.85 - v, v - bottom - lip * 1.15, side]), f.lips)
    hole = np.maximum.reduce([top - v, v - bottom, ua - mw * 0.96])
    cv.paint(b, hole - 0.006, (0.22, 0.06, 0.06))  # interior; at rest a thin lip seam
    teeth = np.maximum.reduce([hole, v - (top + np.minimum(0.022, (bottom - top) * 0.45)), ua - mw * 0.75])
    cv.paint(b, teeth, (0.92, 0.9, 0.84))


def _draw_glasses(cv: _Canvas, f: Identity, yaw) -> None:
    """Thin frames around the eyes (identity nuisance)."""
    b = cv.box(-f.eye_dx - 0.2, f.eye_dx + 0.2, f.eye_y - 0.12, f.eye_y + 0.12)
    u, v = cv.uv(b)
    ua = np.abs(u - yaw)
    ring = np.abs(_ellipse(ua, v, f.eye_dx, f.eye_y + 0.01, f.eye_w * 1.5, 0.085)) - 0.008
    bridge = _segment(ua, v, 0.0, f.eye_y - 0.01, f.eye_dx - f.eye_w * 1.5, f.eye_y - 0.01, 0.007)
    cv.paint(b, np.minimum(ring, bridge), (0.08, 0.08, 0.09))


def _finish(cv: _Canvas, scene: Scene, m: Motion, rng: np.random.Generator) -> np.ndarray:
    """Head shading from the light, exposure flicker, white balance, sensor noise -> uint8."""
    gain = np.broadcast_to(m.gain[:, None, None] * 255, cv.head.shape).copy()  # [T, H, W]
    rows, cols = np.nonzero(cv.head.max(axis=0))
    if len(rows):  # shade the head like a lit ellipsoid; the background keeps its own light
        b = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
        u, v = cv.uv(b)
        nx, ny = np.clip(u / 0.75, -1, 1), np.clip(v / 0.82, -1, 1)
        nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
        lam = np.clip(nx * scene.light[0] + ny * scene.light[1] + nz * scene.light[2], 0, 1)
        shade = scene.ambient + (1 - scene.ambient) * 1.15 * lam
        gain[:, b[0], b[1]] *= 1 + cv.head[:, b[0], b[1]] * (shade - 1)
    noise = rng.random(gain.shape, dtype=np.float32)  # luminance noise, uniform (cheaper than Gaussian)
    noise -= 0.5
    noise *= scene.noise * 255 * np.sqrt(12.0)  # std = scene.noise
    out = np.empty(cv.img.shape[1:] + (3,), np.uint8)  # [T, H, W, 3]
    for k in range(3):
        plane = cv.img[k] * (gain * scene.tint[k])
        plane += noise
        out[..., k] = np.clip(plane + 0.5, 0, 255)
    return out

"""Rendered talking faces: a drawn face whose expression shows the emotion and whose mouth
opens with the voice.

The expression (brows, mouth curvature, eye opening) depends only on the emotion and its
intensity, never on the speaker, so a facial-expression model fitted on a few speakers' faces
recognises everyone's. Speakers differ in skin, hair, background, face and feature proportions.
Frames are RGB uint8, drawn with OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceStyle:
    """How one speaker looks (all lengths relative to the frame size)."""

    skin: tuple[int, int, int]  # RGB
    hair: tuple[int, int, int]
    background: tuple[int, int, int]
    half_width: float  # face oval half-width
    half_height: float  # face oval half-height
    eye_gap: float  # eye centre distance from the midline, relative to half_width
    eye_size: float  # eye half-width, relative to half_width
    mouth_width: float  # mouth half-width, relative to half_width
    hair_style: int  # 0 bald, 1 short, 2 fringe


@dataclass(frozen=True)
class Expression:
    """Facial expression parameters (0 = neutral for all but the factors)."""

    brow_raise: float  # brows up (> 0) or down (< 0), in units of the eye size
    brow_slant: float  # inner ends up (> 0, sad) or down (< 0, angry), in eye sizes
    mouth_curve: float  # mouth corners up (> 0, smile) or down (< 0, frown)
    eye_open: float  # factor on the eye opening
    mouth_width: float  # factor on the mouth width
    mouth_open: float  # factor on the speech-driven mouth opening


EXPRESSIONS = {
    "neutral": Expression(0.0, 0.0, 0.0, 1.0, 1.0, 1.0),
    "happy": Expression(0.4, 0.0, 1.3, 0.65, 1.2, 1.0),
    "sad": Expression(0.1, 1.4, -1.2, 0.5, 0.85, 0.6),
    "angry": Expression(-0.8, -1.4, -0.4, 0.8, 0.8, 1.2),
}


def expression(emotion: str, intensity: float = 1.0) -> Expression:
    """The expression of ``emotion`` at ``intensity`` in [0, 1] of the way from neutral."""
    if emotion not in EXPRESSIONS:
        raise ValueError(f"unknown emotion '{emotion}'; known: {', '.join(EXPRESSIONS)}")
    full, rest, u = EXPRESSIONS[emotion], EXPRESSIONS["neutral"], float(intensity)
    mix = {k: (1 - u) * getattr(rest, k) + u * getattr(full, k) for k in full.__dataclass_fields__}
    return Expression(**mix)


def face_intensity(intensity: float) -> float:
    """How strongly the face shows an emotion spoken at ``intensity`` (0.5 .. 1 for 0 .. 1):
    faces stay clear where voices are subtle."""
    return 0.5 + 0.5 * float(intensity)


def random_face(rng: np.random.Generator) -> FaceStyle:
    """A face drawn from ranges of skin tones, hair, backgrounds and proportions."""
    tone = rng.uniform(0.0, 1.0)  # light .. dark skin
    skin = np.array([240, 200, 170]) * (1 - tone) + np.array([120, 80, 55]) * tone
    hair = rng.choice([[30, 25, 20], [90, 60, 30], [200, 170, 90], [120, 120, 120], [60, 30, 20]])
    luma = lambda c: float(np.dot(c, [0.299, 0.587, 0.114]))  # noqa: E731
    background = rng.integers(30, 230, size=3)
    while abs(luma(background) - luma(skin)) < 50:  # keep the face visible against the background
        background = rng.integers(30, 230, size=3)
    return FaceStyle(
        skin=tuple(int(v) for v in skin),
        hair=tuple(int(v) for v in hair),
        background=tuple(int(v) for v in background),
        half_width=rng.uniform(0.27, 0.33),
        half_height=rng.uniform(0.36, 0.42),
        eye_gap=rng.uniform(0.36, 0.44),
        eye_size=rng.uniform(0.17, 0.22),
        mouth_width=rng.uniform(0.34, 0.44),
        hair_style=int(rng.integers(3)),
    )


def _blinks(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eye-opening factor per frame with a blink (~150 ms) every 2-5 s."""
    factor = np.ones(n_frames)
    t = rng.uniform(0.3, 3.0)
    while t < n_frames / fps:
        start, stop = int(t * fps), int((t + 0.15) * fps) + 1
        factor[start:stop] = 0.1
        t += rng.uniform(2.0, 5.0)
    return factor


def render_face(
    style: FaceStyle,
    expr: Expression,
    openness: np.ndarray,
    fps: float,
    size: int = 96,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frames of a talking face, shape = (T, size, size, 3) uint8, T = len(openness).

    openness: mouth opening 0..1 per frame (from the voice envelope).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(openness)
    blink = _blinks(n, fps, rng)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    t = np.arange(n) / fps
    sway_x = 0.03 * size * np.sin(2 * np.pi * 0.4 * t + phase[0])
    sway_y = 0.02 * size * np.sin(2 * np.pi * 0.3 * t + phase[1])
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = _draw(style, expr, float(openness[i]), blink[i], sway_x[i], sway_y[i], size)
    return frames


def _pt(x: float, y: float) -> tuple[int, int]:
    """A point in cv2's fixed-point coordinates (4 fractional bits) for smooth drawing."""
    return (int(round(x * 16)), int(round(y * 16)))


def _draw(style, expr, openness, blink, dx, dy, size) -> np.ndarray:
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = style.background
    aa, shift = cv2.LINE_AA, 4
    cx, cy = size / 2 + dx, size * 0.52 + dy
    fw, fh = style.half_width * size, style.half_height * size
    hair, skin = style.hair, style.skin
    if style.hair_style > 0:  # hair behind the top of the head
        cv2.ellipse(
            img, _pt(cx, cy - 0.1 * fh), _pt(fw * 1.1, fh * 1.0), 0, 180, 360, hair, -1, aa, shift
        )
    cv2.ellipse(img, _pt(cx, cy), _pt(fw, fh), 0, 0, 360, skin, -1, aa, shift)
    shade = tuple(int(c * 0.7) for c in skin)
    cv2.ellipse(img, _pt(cx, cy), _pt(fw, fh), 0, 0, 360, shade, 1, aa, shift)
    if style.hair_style == 2:  # fringe
        cv2.ellipse(
            img, _pt(cx, cy - 0.75 * fh), _pt(fw * 0.9, fh * 0.3), 0, 180, 360, hair, -1, aa, shift
        )

    # Eyes: white, iris, eyelid opening.
    eye_y = cy - 0.18 * fh
    ew = style.eye_size * fw
    eh = max(ew * 0.55 * expr.eye_open * blink, 0.6)
    for side in (-1, 1):  # eye sockets: darker than the cheeks and the bridge of the nose
        ex = cx + side * style.eye_gap * fw
        socket = tuple(int(c * 0.8) for c in skin)
        cv2.ellipse(img, _pt(ex, eye_y), _pt(ew * 1.5, ew * 1.0), 0, 0, 360, socket, -1, aa, shift)
    for side in (-1, 1):
        ex = cx + side * style.eye_gap * fw
        cv2.ellipse(img, _pt(ex, eye_y), _pt(ew, eh), 0, 0, 360, (250, 250, 250), -1, aa, shift)
        iris = min(ew * 0.5, eh)
        cv2.circle(img, _pt(ex, eye_y), int(round(iris * 16)), (40, 30, 30), -1, aa, shift)
        cv2.ellipse(img, _pt(ex, eye_y), _pt(ew, eh), 0, 0, 360, (60, 40, 40), 1, aa, shift)

        # Brow: a thick line above the eye; its inner end moves with the slant.
        base = eye_y - ew * 1.25 - expr.brow_raise * ew
        inner_x, outer_x = ex - side * ew * 1.0, ex + side * ew * 1.2
        inner_y = base - expr.brow_slant * ew * 0.8
        outer_y = base + expr.brow_slant * ew * 0.2
        thick = max(int(round(size / 40)), 2)
        cv2.line(img, _pt(inner_x, inner_y), _pt(outer_x, outer_y), hair, thick, aa, shift)

    # Nose.
    nose = np.array(
        [
            _pt(cx, cy - 0.05 * fh),
            _pt(cx - 0.08 * fw, cy + 0.2 * fh),
            _pt(cx + 0.08 * fw, cy + 0.2 * fh),
        ]
    )
    cv2.polylines(img, [nose], False, shade, 1, aa, shift)

    # Mouth: corners up or down with the curvature, lips apart with the voice.
    my = cy + 0.5 * fh
    mw = style.mouth_width * fw * expr.mouth_width
    curve = expr.mouth_curve * 0.13 * fh
    gap = (0.02 + 0.3 * min(max(openness, 0.0), 1.0) * expr.mouth_open) * fh
    x = np.linspace(-1.0, 1.0, 21)
    base_y = my - curve * (x**2 - 0.35)
    upper = np.stack([cx + x * mw, base_y - 0.5 * gap * (1 - x**2)], axis=1)
    lower = np.stack([cx + x * mw, base_y + 0.5 * gap * (1 - x**2)], axis=1)
    outline = np.concatenate([upper, lower[::-1]])
    poly = np.round(outline * 16).astype(np.int32)
    cv2.fillPoly(img, [poly], (90, 20, 30), aa, shift)
    lip = (170, 60, 70)
    cv2.polylines(img, [poly], True, lip, max(int(round(size / 64)), 1), aa, shift)
    return img

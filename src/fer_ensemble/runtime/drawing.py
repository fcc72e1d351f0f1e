"""Drawing kept apart from recognition: boxes, labels, per-emotion bars and an fps line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from fer_ensemble.runtime.recognizer import Face

# one BGR colour per emotion, in EMOTIONS order
COLORS = {
    "neutral": (200, 200, 200),
    "happiness": (0, 215, 255),
    "surprise": (255, 191, 0),
    "sadness": (200, 80, 30),
    "anger": (40, 40, 230),
    "disgust": (60, 160, 60),
    "fear": (180, 60, 160),
    "contempt": (0, 120, 200),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, color) -> None:
    cv2.putText(image, text, origin, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, FONT, scale, color, 1, cv2.LINE_AA)


def draw_faces(image: np.ndarray, faces: list[Face], classes: tuple[str, ...], bars: bool = True) -> np.ndarray:
    """A BGR copy of ``image`` with each face's box, label, score and (optionally) bars."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    height, width = canvas.shape[:2]
    scale = max(0.4, min(1.0, width / 1000))
    for face in faces:
        x, y, w, h = face.box
        color = COLORS.get(face.label, (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, max(1, round(2 * scale)))
        tag = f"{face.label} {face.score:.0%}"
        if face.track_id is not None:
            tag = f"#{face.track_id} {tag}"
        _text(canvas, tag, (x, max(12, y - 6)), 0.6 * scale + 0.1, color)
        if bars:
            _draw_bars(canvas, face, classes, (x + w + 4, y), max(40, w // 2), scale)
    return canvas


def _draw_bars(canvas: np.ndarray, face: Face, classes, origin: tuple[int, int], length: int,
               scale: float) -> None:
    x, y = origin
    step = max(10, round(14 * scale))
    if x + length + 70 > canvas.shape[1]:  # no room on the right: draw inside the box
        x = face.box[0] + 2
    for i, name in enumerate(classes):
        top = y + i * step
        if top + step > canvas.shape[0]:
            break
        value = face.probabilities[name]
        cv2.rectangle(canvas, (x, top), (x + round(length * value), top + step - 3), COLORS[name], -1)
        _text(canvas, f"{name[:4]} {value:.2f}", (x + length + 3, top + step - 4), 0.35 * scale + 0.05,
              (255, 255, 255))


def draw_status(canvas: np.ndarray, text: str) -> None:
    """A status line (fps, hints) in the top-left corner, drawn in place."""
    _text(canvas, text, (8, 22), 0.6, (255, 255, 255))

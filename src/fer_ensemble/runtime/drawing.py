"""Drawing kept apart from recognition: boxes, labels, per-emotion bars and an fps line.

Readable on any photo: every box and text has a dark or light halo, labels sit on a filled tag in
the emotion's colour and stay inside the image, and a face's probability panel is drawn only where
it covers no other face, label or panel (beside, then below or above the face; left out when the
faces are too dense for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_ensemble.runtime.face import Face

# one BGR colour per emotion, in EMOTIONS order: distinct hues (matplotlib's tab10, the light ones
# darkened), each at least 3:1 against white (WCAG, for graphics: the timeline plot and the bar
# panels are white) and 4.5:1 against its tag's text; on photos a halo gives the contrast
COLORS = {
    "neutral": (60, 60, 60),
    "happiness": (0, 110, 220),
    "surprise": (180, 150, 0),
    "sadness": (180, 119, 31),
    "anger": (40, 39, 214),
    "disgust": (44, 140, 44),
    "fear": (189, 103, 148),
    "contempt": (75, 86, 140),
}
"""Each emotion's colour, BGR uint8 values (OpenCV's order), chosen as the comment above says."""
TURNED_COLOR = (128, 128, 128)
"""The box and tag of a face turned past the readable range (``Face.turned``): grey, tagged "turned"."""
MESH_COLOR = (255, 255, 224)
"""The landmarks' contours (``Face.landmarks``, with geometry): pale cyan, on a dark halo."""
CONTOURS = {
    "face oval": (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                  148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109, 10),
    "lips, outer": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185, 61),
    "lips, inner": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191, 78),
    "right eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246, 33),
    "left eye": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 263),
    "right brow": (46, 53, 52, 65, 55, 107, 66, 105, 63, 70, 46),
    "left brow": (276, 283, 282, 295, 285, 336, 296, 334, 293, 300, 276),
    "nose": (168, 6, 197, 195, 5, 4),
}
"""The landmark indices drawn as closed or open lines (MediaPipe's ``face_mesh_connections``:
the face oval, lips, eyes, brows; "right" is the person's own), and the ``IRISES`` as dots: a
light mesh that leaves the face readable."""
IRISES = (468, 473)
"""The landmarks at the centre of each iris (the person's right, then left), drawn as dots."""
FONT = cv2.FONT_HERSHEY_SIMPLEX
"""The OpenCV font of every label and value."""
Rect = tuple[int, int, int, int]
"""A rectangle ``(x0, y0, x1, y1)``: its corners in image pixels (x1, y1 exclusive), unlike a
``Box``'s (x, y, w, h)."""


def relative_luminance(color) -> float:
    """WCAG 2 relative luminance of a BGR colour."""
    def linear(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    blue, green, red = color
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast_ratio(a, b) -> float:
    """WCAG 2 contrast ratio of two BGR colours, 1 to 21."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _ink(color) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``color``."""
    black, white = (0, 0, 0), (255, 255, 255)
    return black if contrast_ratio(color, black) > contrast_ratio(color, white) else white


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, color) -> None:
    """Text with a halo of the opposite brightness, readable on any background."""
    cv2.putText(image, text, origin, FONT, scale, _ink(color), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, FONT, scale, color, 1, cv2.LINE_AA)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(rect: Rect, width: int, height: int) -> bool:
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= width and rect[3] <= height


@dataclass
class _Style:
    scale: float  # text scale of labels
    thickness: int  # box lines
    bar_step: int  # pixels per bar row
    bar_length: int
    bar_text: float

    @classmethod
    def for_image(cls, width: int) -> _Style:
        unit = max(0.4, min(1.0, width / 1000))
        return cls(0.6 * unit + 0.1, max(1, round(2 * unit)), max(10, round(14 * unit)), round(60 * unit),
                   0.35 * unit + 0.05)


@dataclass
class _Label:
    text: str
    scale: float
    rect: Rect
    origin: tuple[int, int]


def _place_label(face: Face, style: _Style, width: int, height: int, taken: list[Rect]) -> _Label:
    """The face's tag: full name, then smaller, then abbreviated; above the box, below it, inside its
    top or beside it; the first that stays clear of the other faces and tags (always in the image)."""
    score = (f"{face.score:.0%}" + (" vs rest" if face.relative else "")  # read relative to a resting face
             + (" profile" if face.profiled else ""))  # read through the person's profile
    track = f"#{face.track_id} " if face.track_id is not None else ""
    small = max(0.35, style.scale * 0.7)
    texts = [(f"{track}{face.label} {score}", style.scale), (f"{track}{face.label} {score}", small),
             (f"{track}{face.label[:4]} {score}", small)]  # as in the bars
    if face.turned:  # past the readable range: no emotion shown
        texts = [(f"{track}turned", style.scale), (f"{track}turned", small)]
    x, y, w, h = face.box
    first = None
    for text, scale in texts:
        (text_w, text_h), base = cv2.getTextSize(text, FONT, scale, 1)
        tag_w, tag_h = text_w + 6, text_h + base + 4
        centred = x + (w - tag_w) // 2 if tag_w > w else x
        # above, below, inside the top, then beside the box (left, right)
        for left, top in ((centred, y - tag_h), (centred, y + h), (centred, y), (x - tag_w, y), (x + w, y)):
            left = min(max(0, left), max(0, width - tag_w))
            top = min(max(0, top), max(0, height - tag_h))
            rect = (left, top, left + tag_w, top + tag_h)
            label = _Label(text, scale, rect, (left + 3, top + tag_h - base - 2))
            first = first or label
            if not any(_overlaps(rect, other) for other in taken):
                return label
    assert first is not None  # texts and places are never empty: the loop made a label
    return first


def _panel_rect(face: Face, style: _Style, rows: int, panel_w: int, width: int, height: int,
                taken: list[Rect]) -> Rect | None:
    """Where this face's bars fit: right, left, below or above the box, clear of everything taken."""
    x, y, w, h = face.box
    panel_h = rows * style.bar_step + 4
    gap = 4
    candidates = [(x + w + gap, y), (x - gap - panel_w, y), (x, y + h + gap), (x, y - gap - panel_h)]
    for left, top in candidates:
        rect = (left, top, left + panel_w, top + panel_h)
        if _inside(rect, width, height) and not any(_overlaps(rect, other) for other in taken):
            return rect
    return None


@dataclass
class FaceLayout:
    """Where one face's tag and probability panel go (``panel`` None: no room for it)."""

    label: _Label
    panel: Rect | None


def layout_faces(faces: list[Face], rows: int, width: int, height: int, bars: bool = True) -> list[FaceLayout]:
    """Tags clear of other faces and tags, then panels clear of every face, tag and panel."""
    style = _Style.for_image(width)
    boxes: list[Rect] = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]
    labels: list[_Label] = []
    for i, face in enumerate(faces):
        others = boxes[:i] + boxes[i + 1:]
        labels.append(_place_label(face, style, width, height, others + [label.rect for label in labels]))
    taken = boxes + [label.rect for label in labels]
    panels: list[Rect | None] = []
    text_w = cv2.getTextSize("cont 0.00", FONT, style.bar_text, 1)[0][0]
    for face in faces:
        panel = _panel_rect(face, style, rows, style.bar_length + text_w + 10, width, height, taken) if bars else None
        if panel is not None:
            taken.append(panel)
        panels.append(panel)
    return [FaceLayout(label, panel) for label, panel in zip(labels, panels)]


HELD_OPACITY = 0.45
"""How opaque a held face's box, tag and bars are drawn (``Face.held``: the detector missed it in
this frame and its last box and answer are kept): dimmed, its box dashed, so that a scene cut
does not show confident labels on empty background."""


def draw_faces(image: np.ndarray, faces: list[Face], classes: tuple[str, ...], bars: bool = True) -> np.ndarray:
    """A BGR uint8 copy of ``image`` ((H, W, 3) BGR, (H, W, 4) BGRA or (H, W) gray uint8) with each
    face's box (``Face.box``: x, y, w, h in pixels of ``image``), label, score and, with ``bars`` and
    where they fit, one bar per class of ``classes`` (the order of the bars). A held face
    (``Face.held``) is drawn dimmed (``HELD_OPACITY``) with a dashed box, under the live ones. A
    face with geometry gets its landmarks' contours and irises (``CONTOURS``, ``MESH_COLOR``); a
    ``turned`` one a grey box tagged "turned", without bars."""
    canvas = (cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2
              else cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.shape[2] == 4 else image.copy())
    height, width = canvas.shape[:2]
    style = _Style.for_image(width)
    drawn = list(zip(faces, layout_faces(faces, len(classes), width, height, bars)))
    held = [pair for pair in drawn if pair[0].held]
    if held:
        layer = canvas.copy()
        _draw(layer, held, classes, style, dashed=True)
        canvas = cv2.addWeighted(layer, HELD_OPACITY, canvas, 1 - HELD_OPACITY, 0)
    _draw(canvas, [pair for pair in drawn if not pair[0].held], classes, style)
    return canvas


def _draw(canvas: np.ndarray, drawn: list[tuple[Face, FaceLayout]], classes, style: _Style,
          dashed: bool = False) -> None:
    """Draw the boxes (``dashed``: in dashes), then every tag and panel over them, in place."""
    outline = _dashed_rectangle if dashed else cv2.rectangle
    for face, _ in drawn:
        if face.landmarks is not None:
            _draw_landmarks(canvas, face.landmarks, style)
    for face, _ in drawn:
        color = _color(face)
        x, y, w, h = face.box
        outline(canvas, (x, y), (x + w, y + h), _ink(color), style.thickness + 2)
        outline(canvas, (x, y), (x + w, y + h), color, style.thickness)
    for face, layout in drawn:  # tags and panels over every box
        color = _color(face)
        label = layout.label
        cv2.rectangle(canvas, label.rect[:2], (label.rect[2] - 1, label.rect[3] - 1), color, -1)
        cv2.putText(canvas, label.text, label.origin, FONT, label.scale, _ink(color), 1, cv2.LINE_AA)
        if layout.panel is not None and not face.turned:
            _draw_bars(canvas, face, classes, layout.panel, style)


def _color(face: Face) -> tuple[int, int, int]:
    return TURNED_COLOR if face.turned else COLORS.get(face.label, (0, 255, 0))


def _draw_landmarks(canvas: np.ndarray, landmarks: np.ndarray, style: _Style) -> None:
    """The landmarks' ``CONTOURS`` and ``IRISES`` in ``MESH_COLOR`` on a dark halo, in place."""
    points = np.round(np.asarray(landmarks)[:, :2] * 16).astype(np.int32)  # 4 fractional bits
    lines = [points[list(indices)] for indices in CONTOURS.values()]
    width = max(1, style.thickness // 2)
    for color, thickness in (((40, 40, 40), width + 1), (MESH_COLOR, width)):
        cv2.polylines(canvas, lines, False, color, thickness, cv2.LINE_AA, shift=4)
        for index in IRISES:
            cv2.circle(canvas, tuple(int(v) for v in points[index]), 16 * (width + 1), color, -1, cv2.LINE_AA, shift=4)


def _dashed_rectangle(canvas: np.ndarray, corner: tuple[int, int], opposite: tuple[int, int], color,
                      thickness: int) -> None:
    """``cv2.rectangle``'s outline in dashes (dash and gap 4 times the thickness, 8 pixels at least)."""
    dash = max(8, 4 * thickness)
    (x0, y0), (x1, y1) = corner, opposite
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(canvas, p, q, color, thickness)


def _draw_bars(canvas: np.ndarray, face: Face, classes, rect: Rect, style: _Style) -> None:
    """A light panel (the palette reads on white) with one bar and value per emotion."""
    x0, y0, x1, y1 = rect
    region = canvas[y0:y1, x0:x1]
    region[:] = (region * 0.2 + 255 * 0.8).astype(canvas.dtype)
    for i, name in enumerate(classes):
        top = y0 + 2 + i * style.bar_step
        value = face.probabilities[name]
        length = max(1, round(style.bar_length * value))
        cv2.rectangle(canvas, (x0 + 3, top + 1), (x0 + 3 + length, top + style.bar_step - 3), COLORS[name], -1)
        cv2.putText(canvas, f"{name[:4]} {value:.2f}", (x0 + style.bar_length + 7, top + style.bar_step - 3),
                    FONT, style.bar_text, (0, 0, 0), 1, cv2.LINE_AA)


def draw_status(canvas: np.ndarray, text: str) -> None:
    """A status line (fps, hints) in the top-left corner, drawn in place."""
    _text(canvas, text, (8, 22), 0.6, (255, 255, 255))


def draw_prompt(canvas: np.ndarray, lines: list[str], refused: bool = False) -> None:
    """Lines of text (a guided enrolment's prompt, or its self-check) on a dark band along the bottom
    of ``canvas``, drawn in place: white, the last line in amber when ``refused`` (a capture was
    refused: it says why). Long lines are drawn smaller to fit the width."""
    height, width = canvas.shape[:2]
    scale = max(0.4, min(0.8, width / 900))
    step = int(32 * scale) + 6
    top = max(0, height - step * len(lines) - 8)
    band = canvas[top:height]
    band[:] = (band * 0.35).astype(canvas.dtype)
    for i, line in enumerate(lines):
        fit = min(scale, scale * (width - 16) / max(1, cv2.getTextSize(line, FONT, scale, 1)[0][0]))
        colour = (0, 191, 255) if refused and i == len(lines) - 1 else (255, 255, 255)
        cv2.putText(canvas, line, (8, top + (i + 1) * step - 4), FONT, fit, colour, 1, cv2.LINE_AA)

"""BlazeFace (MediaPipe's short-range face detector) as an optional detector, on ONNX Runtime.

The model ships inside the package (``weights/blazeface_short_range.onnx``, Apache 2.0, built by
``scripts/export_blazeface.py``); nothing is downloaded. It sees a 128x128 picture and finds faces
from about a tenth of its side up, also turned and tilted heads that the frontal Haar cascade
misses. A photo is read as a pyramid of square tiles: the whole image first, then tiles half as
large at each step down to the tile whose smallest findable face is ``min_face``; like the Haar
ladder it stops early when the faces found say smaller ones need not be searched for; a photo
with no upright face is scanned turned by quarter turns too (``turned_scans``). Boxes come
out framed as Haar's (``BLAZEFACE_TO_HAAR``), so the classifiers' crops do not depend on the detector,
and carry each face's roll from the eye keypoints, so ``crop_faces`` can turn a tilted head upright.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, cast

import cv2
import numpy as np

from fer_ensemble.runtime.deprecation import deprecated_attribute
from fer_ensemble.runtime.detection import (
    LIVE_MIN_FACE,
    Box,
    DetectorOptions,
    OptionsDetector,
    TurnedBox,
    iou,
)
from fer_ensemble.runtime.onnx import WEIGHTS_DIR, create_session

BLAZEFACE_FILE = WEIGHTS_DIR / "blazeface_short_range.onnx"
"""MediaPipe's short-range BlazeFace as ONNX (Apache-2.0; ``scripts/export_blazeface.py`` made it)."""
INPUT_SIDE = 128
"""The model's input: 128x128 RGB pixels."""
SMALLEST_FACE = 1 / 9.6
"""Of a tile's side: smaller faces are not looked for in that tile (13 px of the 128 px input, two
thirds of the model's smallest anchor); with it 40 px faces get 384 px tiles, the best trade of
faces found and time among the 256-400 px grids tried on the group photos."""
TILE_STEP = 2 / 3
"""Of a tile's side: neighbouring tiles overlap by a third, so a face up to a third of a tile (where
the next coarser level takes over) lies whole inside one of them."""

UPSIDE_DOWN_CHECK = 0.8
"""Faces scored below this are looked at turned 180 degrees too (0: never). Chosen on FER+ Valid
faces, upright and upside down: below 0.8, and turned taken only when it scores above the upright
view and the score threshold, 4 of 2,828 upright faces were wrongly turned (30 looking at every
face, with no threshold) and 164 of the 178 upside-down faces found were righted."""

QUARTER_TURNS = (90, 180, 270)
"""The turns (degrees, clockwise) of the image that ``turned_scans`` looks at: exact (``np.rot90``)
turns of a copy shrunk once to the scale its finest tiles are read at. Upright, the model finds
heads rolled by up to about 60 degrees (docs/detection.md: 67 % of FER+ faces found when turned by
60, 28 % by 90, 6 % upside down)."""
TURNED_SCANS = ("off", "fallback", "always")
"""When ``BlazeFaceDetector`` also scans the image turned by ``QUARTER_TURNS``: never, only when
the upright scan finds no face (the stills preset: free on photos with a face), or always (heads
upside down or sideways beside upright ones; about twice the time of a photo with faces, three to
four times that of one without: ``benchmark --stills``, docs/speed.md)."""
FALLBACK_FACE = 1 / 8
"""Of the image's short side: the smallest face the turned scans look for when the upright scan
found none (``turned_scans="fallback"``): the subject of a photo taken or stored turned. Looking
as finely as ``min_face``, as ``"always"`` does, makes a photo without a face several times as
slow to read (``benchmark --stills``, its "no face" rows; docs/speed.md)."""
TURNED_SCORE_THRESHOLD = 0.9
"""The least face probability of a face found only in a turned image. Three turned scans give three
times the chances of a false box for faces that are rarely upside down: on the five labelled group
photos and the user-cases, the faces found turned scored 0.94-0.96 and the false boxes 0.71-0.80
(``benchmark --stills``). Chosen there, like the score threshold; held out, taiwan-posed's 625
portraits get no turned box at all."""

RUN_BATCH = 2
"""Tiles per ONNX Runtime call: per tile, batches of 1-2 ran 20 % faster than one of 24 on this
project's 2-core machine (the activations of a small batch stay in cache)."""


@dataclass(frozen=True)
class BlazeFaceOptions(DetectorOptions):
    """The settings of ``BlazeFaceDetector`` (``--detector blazeface``), defaulting to its stills
    preset (``stills()``): ``min_face`` and ``relative_min_face`` as the Haar stills ladder's, the
    score threshold chosen on the five labelled group photos (docs/speed.md, "Photos": ``benchmark
    --stills --score-thresholds``), a photo with no upright face scanned turned (``TURNED_SCANS``);
    ``live()``: one look at the whole frame for faces of ``LIVE_MIN_FACE`` px and more, no turned
    scans (a frame without a face would cost four looks). ``min_face`` in pixels; ``score_threshold``
    the least face probability kept (MediaPipe's own default is 0.5, which on group photos adds false
    positives); ``relative_min_face``: once faces are found, finer tiles are scanned only for faces
    down to this fraction of the largest (0: always down to ``min_face``); ``upside_down_check``:
    faces scored below it get a second look turned 180 degrees (0: none); ``turned_scans``: one of
    ``TURNED_SCANS``; ``model``: the ONNX file. SpecError, one line, for a value out of range."""

    name: ClassVar[str] = "blazeface"
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]] = {
        "min_face": (1, None, "[)"), "score_threshold": (0.0, 1.0, "()"), "relative_min_face": (0.0, 1.0, "[]"),
        "upside_down_check": (0.0, 1.0, "[]")}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"turned_scans": TURNED_SCANS}

    min_face: int = 40
    score_threshold: float = 0.7
    relative_min_face: float = 0.4
    upside_down_check: float = UPSIDE_DOWN_CHECK
    turned_scans: str = "fallback"
    model: str = str(BLAZEFACE_FILE)

    @classmethod
    def live(cls, **settings: Any) -> BlazeFaceOptions:
        """The live preset (``webcam``, ``video``, streams) with ``settings``."""
        return cls(**{"min_face": LIVE_MIN_FACE, "relative_min_face": 0.0, "turned_scans": "off", **settings})

    def for_live(self) -> BlazeFaceOptions:
        """The live preset keeping these options' score threshold, check and model."""
        return BlazeFaceOptions.live(score_threshold=self.score_threshold,
                                     upside_down_check=self.upside_down_check, model=self.model)


BLAZEFACE_TO_HAAR = {"scale": 1.12, "dx": 0.0, "dy": -0.10, "eyes": 2.35}
"""Haar's box for the face BlazeFace boxes: side ``scale`` times BlazeFace's, centre moved by ``dx``,
``dy`` of BlazeFace's side (in the face's own frame). BlazeFace's box shrinks on a head turned in
the image plane (by a fifth at 40 degrees) while its eyes stay as far apart, so the side used is
the larger of the box's and ``eyes`` times the eyes' distance. Measured on FER+ images by
``scripts/measure_framing.py --detector blazeface``; a test pins the values."""


def _anchors() -> np.ndarray:
    """Centres (x, y) in [0, 1] of the model's 896 anchors: 16x16 cells with 2 anchors, 8x8 with 6."""
    centres = []
    for cells, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


ANCHORS = _anchors()
"""(896, 2) float32: the centres (x, y) in [0, 1] of the model's anchors."""


class Detection(NamedTuple):
    """BlazeFace's own box (image pixels), its face probability, the roll of the eyes' line
    (degrees, clockwise as seen) and the eyes' distance (pixels)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    roll: float
    eye_distance: float


@dataclass
class Tile:
    """A square window of the (padded) image: left, top, side, in image pixels."""

    x: int
    y: int
    side: int


def pyramid(height: int, width: int, min_face: float) -> list[int]:
    """Tile sides, coarse to fine: the whole image (its longer side), then halving down to the side
    whose smallest findable face is ``min_face`` pixels."""
    finest = max(1, round(min_face / SMALLEST_FACE))
    sides = [max(height, width)]
    while sides[-1] > finest:
        sides.append(max(finest, sides[-1] // 2))
    return sides


def tiles(height: int, width: int, side: int) -> list[Tile]:
    """Windows of ``side`` pixels covering the image, a third of a side overlapping."""
    step = max(1, round(side * TILE_STEP))

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        positions = list(range(0, length - side, step))
        return positions + [length - side]

    return [Tile(x, y, side) for y in starts(height) for x in starts(width)]


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


class BlazeFaceDetector(OptionsDetector):
    """Faces in BGR, BGRA or gray images; boxes in image pixels framed as Haar's, left to right.
    ``options`` (default: the stills preset) with ``settings`` replacing some of them:
    ``BlazeFaceDetector(BlazeFaceOptions.live())``, ``BlazeFaceDetector(turned_scans="off")``;
    ``threads``: ONNX Runtime's. Boxes are ``TurnedBox``es: their ``roll`` lets ``crop_faces`` turn a
    tilted head upright. SpecError, one line, for a setting out of range; UserError for a missing
    or unreadable model file.
    """

    reads_colour: ClassVar[bool] = True  # EmotionRecognizer passes the colour image, not its gray copy
    options: BlazeFaceOptions
    options_type = BlazeFaceOptions

    def __init__(self, options: BlazeFaceOptions | None = None, *, threads: int | None = None,
                 **settings: Any) -> None:
        self.take_options(options, settings)
        self.threads = threads
        self._session = create_session(self.options.model, threads)  # UserError for a missing or bad file
        self._min_logit = math.log(self.options.score_threshold / (1 - self.options.score_threshold))

    def __repr__(self) -> str:
        return f"BlazeFaceDetector({self.options!r}, threads={self.threads})"

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes in pixels of ``image`` (an (H, W, 3) BGR or (H, W) gray uint8 array), framed as
        Haar frames a face (``BLAZEFACE_TO_HAAR``), sorted left to right; each a ``TurnedBox``: an
        ``(x, y, w, h)`` tuple that also carries the face's ``roll`` in degrees."""
        boxes: list[Box] = [as_haar(detection) for detection in self.detections(image)]
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def detections(self, image: np.ndarray) -> list[Detection]:
        """BlazeFace's own detections (image pixels), coarse levels first, finer ones while faces
        may be missing; with ``turned_scans``, also the faces of the image turned by 90, 180 and
        270 degrees: always (``merge_turned``: a face found turned with a higher score than upright
        takes the turned box and roll), or when the upright scan found nothing, and then faces of
        ``FALLBACK_FACE`` of the image's short side and more."""
        rgb = _to_rgb(image)
        found = self._pyramid(rgb)
        if self.options.turned_scans == "always":
            found = merge_turned(found, self.turned_detections(rgb, found))
        elif self.options.turned_scans == "fallback" and not found:
            found = self.turned_detections(rgb, found, min_face=max(self.options.min_face, FALLBACK_FACE * min(rgb.shape[:2])))
        return self._orient(rgb, found) if self.options.upside_down_check else found

    def turned_detections(self, rgb: np.ndarray, upright: list[Detection], least: float | None = None,
                          min_face: float | None = None) -> list[Detection]:
        """Faces scored ``least`` or more (default: the larger of ``score_threshold`` and
        ``TURNED_SCORE_THRESHOLD``) in the RGB image ``rgb`` turned by each of ``QUARTER_TURNS``,
        in upright image pixels and rolls, faces the ``upright`` detections hold included (they
        only end a turned pyramid early; ``merge_turned`` joins the two); faces of ``min_face``
        pixels and more (default: the detector's)."""
        least = max(self.options.score_threshold, TURNED_SCORE_THRESHOLD) if least is None else least
        min_face = self.options.min_face if min_face is None else min_face
        height, width = rgb.shape[:2]
        # the finest tile is shrunk to the model's 128 px anyway: shrink the image once, not each turned copy's tiles
        shrink = min(1.0, INPUT_SIDE / pyramid(height, width, min_face)[-1])
        small = rgb if shrink == 1.0 else cv2.resize(
            rgb, (max(1, round(width * shrink)), max(1, round(height * shrink))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / width, small.shape[0] / height  # each side rounded on its own
        known = [_scaled(d, fx, fy) for d in upright]
        turned = [_scaled(_turned_back(d, turn, small.shape[:2]), 1 / fx, 1 / fy) for turn in QUARTER_TURNS
                  for d in self._pyramid(_turn(small, turn), known, min_face * shrink, least)]
        return _suppress(turned)

    def _pyramid(self, rgb: np.ndarray, known: Sequence[Detection] = (), min_face: float | None = None,
                 least: float = 0.0) -> list[Detection]:
        """The pyramid of tiles, coarse to fine, down to faces of ``min_face`` pixels (default: the
        detector's) or until the faces found (and the ``known`` ones, found in another view of the
        same image) need no finer level (``relative_min_face``); faces scored below ``least`` are
        dropped as each level is read, so that they cannot end the scan before a finer level."""
        found: list[Detection] = []
        covered = math.inf  # the smallest face the levels scanned so far look for
        height, width = rgb.shape[:2]
        min_face = self.options.min_face if min_face is None else min_face
        for side in pyramid(height, width, min_face):
            if (found or known) and covered <= self._needed([*found, *known], min_face):
                break
            found = [d for d in _suppress(found + self._scan(rgb, side)) if d.score >= least]
            covered = side * SMALLEST_FACE
        return found

    def _orient(self, rgb: np.ndarray, found: list[Detection]) -> list[Detection]:
        """Faces the model is unsure of, looked at again upright and turned 180 degrees: an upside-down
        face scores higher turned (and above the threshold), and only then are its eyes found where
        they are (its roll +180)."""
        doubtful = [i for i, d in enumerate(found) if d.score < self.options.upside_down_check]
        if not doubtful:
            return found
        views = []
        for i in doubtful:
            d = found[i]
            window = 3 * max(d.w, d.h)  # the face at a third of the model's picture, as in a tile
            for angle in (0, 180):
                turn: np.ndarray = cv2.getRotationMatrix2D((d.x + d.w / 2, d.y + d.h / 2), angle,
                                                           INPUT_SIDE / window)
                turn[:, 2] += INPUT_SIDE / 2 - np.array([d.x + d.w / 2, d.y + d.h / 2])
                views.append(cv2.warpAffine(rgb, turn, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR))
        regressors, logits = self._run(views)
        oriented = list(found)
        for k, i in enumerate(doubtful):
            upright, turned = (_central_face(regressors[2 * k + j], logits[2 * k + j]) for j in (0, 1))
            if turned is not None and turned[0] >= self.options.score_threshold and (upright is None or turned[0] > upright[0]):
                roll = (turned[1] + 360) % 360 - 180  # turned back: +180 degrees, within (-180, 180]
                oriented[i] = found[i]._replace(roll=roll)
        return oriented

    def _run(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The model on 128x128 RGB crops, RUN_BATCH at a time: regressors (N, 896, 16), logits (N, 896)."""
        batch = cv2.dnn.blobFromImages(crops, scalefactor=1 / 127.5, mean=(127.5, 127.5, 127.5))
        outputs = [self._session.run(None, {"input": batch[i:i + RUN_BATCH]}) for i in range(0, len(batch), RUN_BATCH)]
        regressors, logits = (np.concatenate(parts) for parts in zip(*outputs))
        return regressors, logits[..., 0]

    def _needed(self, found: list[Detection], min_face: float) -> float:
        return max(min_face, self.options.relative_min_face * max(det.w for det in found))

    def _scan(self, rgb: np.ndarray, side: int) -> list[Detection]:
        """Detections of one pyramid level, in image pixels; faces cut by a tile's inner edge are
        left to the neighbouring tile that holds them whole."""
        height, width = rgb.shape[:2]
        padded = rgb
        if height < side or width < side:  # letterbox, as MediaPipe does: black below and right
            padded = cv2.copyMakeBorder(rgb, 0, max(0, side - height), 0, max(0, side - width),
                                        cv2.BORDER_CONSTANT, value=(0, 0, 0))
        windows = tiles(height, width, side)
        shrink = cv2.INTER_AREA if side > INPUT_SIDE else cv2.INTER_LINEAR
        crops = [cv2.resize(padded[t.y:t.y + side, t.x:t.x + side], (INPUT_SIDE, INPUT_SIDE),
                            interpolation=shrink) for t in windows]
        regressors, logits = self._run(crops)
        detections = []
        for tile, regression, logit in zip(windows, regressors, logits):
            for index in np.flatnonzero(logit > self._min_logit):
                dx, dy, w, h = regression[index, :4] / INPUT_SIDE * tile.side
                cx = ANCHORS[index, 0] * tile.side + dx + tile.x
                cy = ANCHORS[index, 1] * tile.side + dy + tile.y
                detection = Detection(cx - w / 2, cy - h / 2, w, h, _probability(logit[index]),
                                      _roll(regression[index]), _eye_distance(regression[index]) / INPUT_SIDE * tile.side)
                if not _cut_by_inner_edge(detection, tile, height, width):
                    detections.append(detection)
        return detections


def _turn(rgb: np.ndarray, turn: int) -> np.ndarray:
    """The image turned clockwise by ``turn`` degrees (a multiple of 90)."""
    return np.ascontiguousarray(np.rot90(rgb, -(turn // 90)))


def _turned_back(d: Detection, turn: int, shape: tuple[int, int]) -> Detection:
    """A detection in the image turned clockwise by ``turn`` degrees, in the upright image's
    pixels (``shape``: its height and width), its roll turned back with it."""
    height, width = shape
    cx, cy = d.x + d.w / 2, d.y + d.h / 2
    if turn == 90:  # upright (x, y) was shown at (height - y, x)
        cx, cy = cy, height - cx
    elif turn == 180:
        cx, cy = width - cx, height - cy
    elif turn == 270:  # upright (x, y) was shown at (y, width - x)
        cx, cy = width - cy, cx
    w, h = (d.h, d.w) if turn % 180 else (d.w, d.h)
    roll = (d.roll - turn + 180) % 360 - 180
    return d._replace(x=cx - w / 2, y=cy - h / 2, w=w, h=h, roll=roll)


def _scaled(d: Detection, fx: float, fy: float) -> Detection:
    """A detection in pixels of the image scaled by ``fx`` across and ``fy`` down."""
    return d._replace(x=d.x * fx, y=d.y * fy, w=d.w * fx, h=d.h * fy, eye_distance=d.eye_distance * math.sqrt(fx * fy))


def _probability(logit: float) -> float:
    return 1 / (1 + math.exp(-float(logit)))


def _roll(regression: np.ndarray) -> float:
    """Degrees of the eyes' line, clockwise as seen (keypoints 0 and 1: the eyes, as in a mirror)."""
    right_x, right_y, left_x, left_y = regression[4:8]
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def _eye_distance(regression: np.ndarray) -> float:
    right_x, right_y, left_x, left_y = regression[4:8]
    return math.hypot(left_x - right_x, left_y - right_y)


def _central_face(regression: np.ndarray, logit: np.ndarray) -> tuple[float, float] | None:
    """(probability, roll) of the best face whose centre lies in the middle third of a view made by
    ``_orient``, or None."""
    centre_x = ANCHORS[:, 0] * INPUT_SIDE + regression[:, 0]
    centre_y = ANCHORS[:, 1] * INPUT_SIDE + regression[:, 1]
    middle = (np.abs(centre_x - INPUT_SIDE / 2) < INPUT_SIDE / 6) & (np.abs(centre_y - INPUT_SIDE / 2) < INPUT_SIDE / 6)
    if not middle.any():
        return None
    best = int(np.flatnonzero(middle)[np.argmax(logit[middle])])
    return _probability(logit[best]), _roll(regression[best])


def _cut_by_inner_edge(box: Detection, tile: Tile, height: int, width: int, slack: float = 0.1) -> bool:
    x, y, w, h = box[:4]
    allowed = slack * w
    return ((tile.x > 0 and x < tile.x - allowed) or (tile.y > 0 and y < tile.y - allowed)
            or (tile.x + tile.side < width and x + w > tile.x + tile.side + allowed)
            or (tile.y + tile.side < height and y + h > tile.y + tile.side + allowed))


def _same_face(a, b) -> bool:
    """Overlapping boxes (IoU above 0.3), or one's centre inside the other."""
    if iou(a[:4], b[:4]) > 0.3:
        return True
    return (abs(a[0] + a[2] / 2 - b[0] - b[2] / 2) < max(a[2], b[2]) / 2
            and abs(a[1] + a[3] / 2 - b[1] - b[3] / 2) < max(a[3], b[3]) / 2)


def _suppress(detections: list[Detection]) -> list[Detection]:
    """One box per face: the best-scoring detection's group, boxes and rolls averaged by score
    (MediaPipe's weighted non-maximum suppression)."""
    kept = []
    remaining = sorted(detections, key=lambda d: -d.score)
    while remaining:
        best = remaining[0]
        group = [d for d in remaining if _same_face(best, d)]
        remaining = [d for d in remaining if not _same_face(best, d)]
        weights = np.array([d.score for d in group])
        x, y, w, h, eyes = (np.array([(d.x, d.y, d.w, d.h, d.eye_distance) for d in group]).T @ weights) / weights.sum()
        rolls = np.radians([d.roll for d in group])
        roll = math.degrees(math.atan2(np.sin(rolls) @ weights, np.cos(rolls) @ weights))
        kept.append(Detection(x, y, w, h, best.score, roll, eyes))
    return kept


def merge_turned(upright: list[Detection], turned: list[Detection]) -> list[Detection]:
    """The ``upright`` detections, each replaced by the turned detection of the same face
    (``_same_face``; the one overlapping it most) where that one scores higher, then the ``turned``
    faces no upright detection holds (``added_faces``). A face is read the way up the model is
    surest of: an upside-down head found upright with a wrong roll takes its turned box and roll."""
    merged = list(upright)
    replaced: set[int] = set()
    for face in sorted(turned, key=lambda d: -d.score):
        held = [i for i, d in enumerate(upright) if i not in replaced and _same_face(face, d)]
        if held:
            i = max(held, key=lambda i: _overlap(face, upright[i]))
            if face.score > upright[i].score:
                merged[i] = face
                replaced.add(i)
    return merged + added_faces(upright, turned)


def _overlap(a: Detection, b: Detection) -> float:
    """Intersection over union of two detections' boxes (``iou`` on float pixels)."""
    return iou(cast(Box, a[:4]), cast(Box, b[:4]))


def added_faces(upright: list[Detection], turned: list[Detection]) -> list[Detection]:
    """The ``turned`` detections that no ``upright`` detection holds: faces the upright scan missed."""
    return [d for d in turned if not any(_same_face(d, f) for f in upright)]


def as_haar(detection: Detection, to_haar: dict = BLAZEFACE_TO_HAAR) -> TurnedBox:
    """Haar's box for this face, its centre shifted in the face's own frame (turned by its roll)."""
    x, y, w, h, _, roll, eyes = detection
    side = max(w, h, to_haar["eyes"] * eyes) * to_haar["scale"]
    turn = math.radians(roll)
    shift_x, shift_y = to_haar["dx"] * w, to_haar["dy"] * h
    cx = x + w / 2 + shift_x * math.cos(turn) - shift_y * math.sin(turn)
    cy = y + h / 2 + shift_x * math.sin(turn) + shift_y * math.cos(turn)
    return TurnedBox((round(cx - side / 2), round(cy - side / 2), round(side), round(side)), roll)


def __getattr__(name: str) -> Any:
    """The deprecated preset dict (``runtime.deprecation.DEPRECATED``), for one release."""
    return deprecated_attribute(__name__, name, {"BLAZEFACE_DETECTION": lambda: {
        key: getattr(BlazeFaceOptions(), key) for key in ("min_face", "score_threshold", "relative_min_face", "turned_scans")}})

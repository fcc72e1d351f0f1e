"""Face geometry: 478 landmarks, a head pose and 52 blendshapes per face, from MediaPipe's Face
Landmarker models converted to ONNX (``scripts/export_face_landmarker.py``; Apache 2.0, Google's
notice in ``weights/face_landmarker.LICENSE``). Torch-free and nothing downloaded.

A face's crop follows MediaPipe's own framing: a square 1.5 times the detector's box
(``ROI_SCALE``) around its centre, turned by the box's roll (a ``TurnedBox``'s) so the face stands
upright, at 256 x 256 RGB in [0, 1]. The landmarks model gives 478 points in that crop; they are
mapped back to image pixels. The blendshapes model reads 146 of them (``BLENDSHAPE_LANDMARKS``, in
image pixels, as MediaPipe's graph gives them) and scores 52 facial movements in [0, 1]
(``BLENDSHAPE_NAMES``: ARKit's, the closest shippable thing to action units). The head pose comes
from the landmarks' 3-D shape (``head_pose``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.constants import BLENDSHAPES
from fer_ensemble.runtime.detection import Box
from fer_ensemble.runtime.onnx import WEIGHTS_DIR, create_session

LANDMARKS_MODEL = WEIGHTS_DIR / "face_landmarks.onnx"
"""MediaPipe's face mesh (``face_landmarks_detector.tflite``) as ONNX."""
BLENDSHAPES_MODEL = WEIGHTS_DIR / "face_blendshapes.onnx"
"""MediaPipe's blendshape model (``face_blendshapes.tflite``, "Blendshape V2") as ONNX."""
ROI_SCALE = 1.5
"""The landmarks model's crop: a square this many times the detector's box (MediaPipe's
``face_landmarker_graph.cc``)."""
RETRY_SCALE = 1.0
"""A crop in which the model finds no face at ``ROI_SCALE`` is read once more at this many times
the box: a turned face in a loose box (the sample cameraman in ``video``'s live-preset box, 99 px:
presence 0.007 at 1.5, 0.986 at 1.0) is then found; a crop with no face stays without."""
INPUT_SIZE = 256
"""The landmarks model's input side in pixels."""
LANDMARKS = 478
"""468 face mesh points and 10 iris points."""
MIN_PRESENCE = 0.5
"""A crop whose face-presence score (the landmarks model's second output, a sigmoid) is below this
holds no face the model can read: its geometry is None."""
BLENDSHAPE_LANDMARKS = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249,
    251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314,
    317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473,
    474, 475, 476, 477)
"""The 146 landmarks the blendshapes model reads (``kLandmarksSubsetIdxs`` of MediaPipe's
``face_blendshapes_graph.cc``)."""
BLENDSHAPE_NAMES = ("_neutral", *BLENDSHAPES)
"""The blendshapes model's 52 outputs, in order (``kBlendshapeNames``; "Left" and "Right" are the
person's own, so the person's left is on the image's right). ``_neutral`` is a baseline MediaPipe
tells users to ignore; ``FaceGeometry.blendshapes`` leaves it out."""
YAW_LIMIT = 50.0
"""|yaw| in degrees up to which the ensemble's answers were measured to hold: FER+ Valid and Test's
faces read within 10 points of the frontal ones' accuracy in every 10-degree bin up to here, and
too few faces were turned farther to tell (``scripts/pose_limit_study.py``; docs/accuracy.md). A
face turned farther is ``turned``."""
PITCH_LIMIT = 30.0
"""|pitch| in degrees up to which the answers were measured to hold (as ``YAW_LIMIT``)."""
POSE_POINTS = {"cheek_right": 234, "cheek_left": 454, "forehead": 10, "chin": 152, "eye_right": 33, "eye_left": 263}
"""The landmarks ``head_pose`` reads (the person's right cheek and eye are on the image's left)."""


@dataclass
class FaceGeometry:
    """One face's geometry: ``landmarks`` (478, 3) float32, x and y in image pixels, z the depth in
    the same units (smaller: nearer the camera; relative to the face); ``pose`` (yaw, pitch, roll)
    in degrees (``head_pose``'s conventions); ``blendshapes``: 51 named scores in [0, 1]
    (``BLENDSHAPE_NAMES`` but ``_neutral``); ``presence``: the landmarks model's face score."""

    landmarks: np.ndarray
    pose: tuple[float, float, float]
    blendshapes: dict[str, float]
    presence: float


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from (478, 3) landmarks (image pixels, z depth as x and y).
    Roll: the angle of the eyes' line, clockwise as seen (as ``TurnedBox.roll``); yaw: positive
    when the face turns toward the image's right (its nose moves right; the cheek on the right goes
    away from the camera); pitch: positive when the face looks up (its chin comes nearer than its
    forehead). Yaw and pitch are read in the face's own upright frame (the roll undone)."""
    p = {name: landmarks[i].astype(np.float64) for name, i in POSE_POINTS.items()}
    eyes = p["eye_left"] - p["eye_right"]
    roll = math.atan2(eyes[1], eyes[0])
    turn = np.array([[math.cos(roll), math.sin(roll)], [-math.sin(roll), math.cos(roll)]])  # undoes the roll

    def upright(vector: np.ndarray) -> tuple[float, float, float]:
        x, y = turn @ vector[:2]
        return float(x), float(y), float(vector[2])

    across_x, _, across_z = upright(p["cheek_left"] - p["cheek_right"])
    _, down_y, down_z = upright(p["chin"] - p["forehead"])
    yaw = math.atan2(across_z, across_x)
    pitch = math.atan2(-down_z, down_y)
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def turned(pose: tuple[float, float, float]) -> bool:
    """Whether a face at ``pose`` (yaw, pitch, roll in degrees) is turned past the measured readable
    range (|yaw| > ``YAW_LIMIT`` or |pitch| > ``PITCH_LIMIT``; roll is stood upright, so any roll is read)."""
    return abs(pose[0]) > YAW_LIMIT or abs(pose[1]) > PITCH_LIMIT


def roi_transform(box: Box, roll_degrees: float = 0.0, scale_of_box: float = ROI_SCALE) -> np.ndarray:
    """The (2, 3) affine map from the 256 x 256 crop's pixels to the image's, for a face at ``box``
    (x, y, w, h) turned by ``roll_degrees`` (clockwise as seen): a square ``scale_of_box`` (default
    ``ROI_SCALE``) times the box's longer side around its centre, its x axis along the eyes' line."""
    x, y, w, h = box
    side = scale_of_box * max(w, h)
    theta = math.radians(roll_degrees)
    c, s = math.cos(theta), math.sin(theta)
    scale = side / INPUT_SIZE
    cx, cy = x + w / 2, y + h / 2
    return np.array([[scale * c, -scale * s, cx - side / 2 * (c - s)],
                     [scale * s, scale * c, cy - side / 2 * (s + c)]], np.float64)


class GeometryReader:
    """Reads faces' geometry (``read``) with the two ONNX models, loaded once (``threads``: ONNX
    Runtime threads each). UserError when a model file is missing or damaged. Thread-safe."""

    def __init__(self, threads: int | None = None, landmarks_model: str | Path = LANDMARKS_MODEL,
                 blendshapes_model: str | Path = BLENDSHAPES_MODEL):
        self.landmarks_session = create_session(landmarks_model, threads)
        self.blendshapes_session = create_session(blendshapes_model, threads)
        self._landmarks_input = self.landmarks_session.get_inputs()[0].name
        self._blendshapes_input = self.blendshapes_session.get_inputs()[0].name

    def read(self, image: np.ndarray, boxes: list[Box]) -> list[FaceGeometry | None]:
        """Each box's ``FaceGeometry`` in ``image`` ((H, W, 3) BGR or (H, W) gray uint8), None where
        the model finds no face in the crop (presence below ``MIN_PRESENCE``) at ``ROI_SCALE`` nor,
        read once more, at ``RETRY_SCALE``. The crops go through the landmarks model in one batch."""
        if not boxes:
            return []
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        maps = [roi_transform(box, getattr(box, "roll", 0.0)) for box in boxes]
        points, presence = self._landmarks(rgb, maps)
        missed = [i for i, score in enumerate(presence) if score < MIN_PRESENCE]
        if missed:  # a loose box (a tracker's, a detector's live preset) on a turned face: once more, tighter
            tighter = [roi_transform(boxes[i], getattr(boxes[i], "roll", 0.0), RETRY_SCALE) for i in missed]
            retried, retried_presence = self._landmarks(rgb, tighter)
            for k, i in enumerate(missed):
                maps[i], points[i], presence[i] = tighter[k], retried[k], retried_presence[k]
        return [self._geometry(p, m, float(score)) if score >= MIN_PRESENCE else None
                for p, m, score in zip(points, maps, presence)]

    def _landmarks(self, rgb: np.ndarray, maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 478, 3) landmarks in crop pixels and (N,) presence scores of the crops ``maps`` frame."""
        crops = np.stack([cv2.warpAffine(rgb, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_REPLICATE) for m in maps]).astype(np.float32) / 255
        points, presence, *_ = self.landmarks_session.run(None, {self._landmarks_input: crops})
        return points.reshape(len(maps), LANDMARKS, 3), 1 / (1 + np.exp(-presence.reshape(len(maps))))

    def _geometry(self, crop_points: np.ndarray, transform: np.ndarray, presence: float) -> FaceGeometry:
        xy = crop_points[:, :2] @ transform[:, :2].T + transform[:, 2]
        scale = float(np.hypot(*transform[:, 0]))  # image pixels per crop pixel
        landmarks = np.column_stack([xy, crop_points[:, 2] * scale]).astype(np.float32)
        subset = landmarks[list(BLENDSHAPE_LANDMARKS), :2][None].astype(np.float32)
        scores = self.blendshapes_session.run(None, {self._blendshapes_input: subset})[0].reshape(-1)
        blendshapes = {name: float(v) for name, v in zip(BLENDSHAPE_NAMES, scores) if name != "_neutral"}
        return FaceGeometry(landmarks, head_pose(landmarks), blendshapes, presence)

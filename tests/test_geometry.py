"""Face geometry (MediaPipe's face landmarker as ONNX): landmarks, head pose and blendshapes per face,
their sign conventions on mirrored and turned faces, and ``predict --geometry``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import run_cli

from fer_ensemble.media import SAMPLES
from fer_ensemble.runtime.geometry import (
    BLENDSHAPE_NAMES,
    LANDMARKS,
    POSE_POINTS,
    GeometryReader,
    head_pose,
)
from fer_ensemble.runtime.recognizer import EmotionRecognizer


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer(geometry=True)


def only_face(recognizer: EmotionRecognizer, image: np.ndarray):
    faces = recognizer.predict(image)
    assert len(faces) == 1
    return faces[0]


def test_each_face_gets_landmarks_on_it_a_pose_and_named_blendshapes(recognizer: EmotionRecognizer) -> None:
    smiling = only_face(recognizer, cv2.imread(str(SAMPLES / "astronaut.png")))
    calm = only_face(recognizer, cv2.imread(str(SAMPLES / "grace_hopper.jpg")))
    for face in (smiling, calm):
        assert face.landmarks.shape == (LANDMARKS, 3) and face.landmarks.dtype == np.float32
        x, y, w, h = face.box
        inside = ((face.landmarks[:, 0] >= x - 0.2 * w) & (face.landmarks[:, 0] <= x + 1.2 * w)
                  & (face.landmarks[:, 1] >= y - 0.2 * h) & (face.landmarks[:, 1] <= y + 1.2 * h))
        assert inside.all()
        assert set(face.blendshapes) == set(BLENDSHAPE_NAMES) - {"_neutral"}
        assert all(0.0 <= v <= 1.0 for v in face.blendshapes.values())
        assert all(abs(angle) < 20 for angle in face.pose)  # both look at the camera
    smile = ("mouthSmileLeft", "mouthSmileRight")
    assert min(smiling.blendshapes[k] for k in smile) > 0.5 > max(calm.blendshapes[k] for k in smile)
    assert EmotionRecognizer().geometry is None  # off by default: no model loaded, nothing computed


def test_a_mirrored_face_mirrors_its_pose_and_landmarks(recognizer: EmotionRecognizer) -> None:
    image = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    face, mirrored = only_face(recognizer, image), only_face(recognizer, cv2.flip(image, 1))
    assert mirrored.pose[0] == pytest.approx(-face.pose[0], abs=2) and mirrored.pose[2] == pytest.approx(-face.pose[2], abs=2)
    assert mirrored.pose[1] == pytest.approx(face.pose[1], abs=2)
    nose = 1
    assert mirrored.landmarks[nose, 0] == pytest.approx(image.shape[1] - 1 - face.landmarks[nose, 0], abs=6)


@pytest.mark.parametrize("angle", [25, -25])
def test_a_face_turned_in_the_image_reads_that_roll(recognizer: EmotionRecognizer, angle: float) -> None:
    """Roll is clockwise as seen, as the detector's: OpenCV's rotation by a positive angle turns the
    picture counterclockwise, so the face's roll falls by that angle."""
    image = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    upright = only_face(recognizer, image).pose[2]
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)
    assert only_face(recognizer, turned).pose[2] == pytest.approx(upright - angle, abs=5)


def test_the_pose_conventions_on_landmarks_built_by_hand() -> None:
    """Yaw: the cheek on the image's right farther from the camera (z larger) turns the face right,
    positive; pitch: the chin nearer than the forehead, looking up, positive; roll: the eye on the
    image's right lower, clockwise, positive."""
    points = np.zeros((LANDMARKS, 3), np.float32)
    layout = {"cheek_right": (-60, 0, 0), "cheek_left": (60, 0, 0), "forehead": (0, -80, 0), "chin": (0, 80, 0),
              "eye_right": (-30, -20, 0), "eye_left": (30, -20, 0)}
    for name, xyz in layout.items():
        points[POSE_POINTS[name]] = xyz
    assert head_pose(points) == pytest.approx((0, 0, 0), abs=1e-6)
    turned = points.copy()
    turned[POSE_POINTS["cheek_left"], 2], turned[POSE_POINTS["cheek_right"], 2] = 30, -30
    assert head_pose(turned)[0] == pytest.approx(np.degrees(np.arctan2(60, 120)))
    up = points.copy()
    up[POSE_POINTS["chin"], 2] = -40
    assert head_pose(up)[1] == pytest.approx(np.degrees(np.arctan2(40, 160)))
    tilted = points.copy()
    tilted[POSE_POINTS["eye_left"], 1] = 10
    assert head_pose(tilted)[2] == pytest.approx(np.degrees(np.arctan2(30, 60)))


def test_a_crop_with_no_face_has_no_geometry() -> None:
    reader = GeometryReader(threads=1)
    flat = np.full((300, 300, 3), 128, np.uint8)
    assert reader.read(flat, [(100, 100, 100, 100)]) == [None] and reader.read(flat, []) == []


def test_predict_geometry_adds_pose_blendshapes_and_landmarks_to_the_json_only_when_asked() -> None:
    photo = str(SAMPLES / "astronaut.png")
    [face] = json.loads(run_cli("predict", photo, "--json", "--geometry").stdout.splitlines()[0])["faces"]
    assert set(face["pose"]) == {"yaw", "pitch", "roll"} and len(face["blendshapes"]) == 51
    assert len(face["landmarks"]) == LANDMARKS and len(face["landmarks"][0]) == 3
    [plain] = json.loads(run_cli("predict", photo, "--json").stdout.splitlines()[0])["faces"]
    assert not {"pose", "blendshapes", "landmarks"} & set(plain) and plain["label"] == face["label"]


def test_faces_with_geometry_still_compare(recognizer: EmotionRecognizer) -> None:
    image = cv2.imread(str(SAMPLES / "astronaut.png"))
    assert recognizer.predict(image) == recognizer.predict(image)  # landmarks (an array) take no part


def test_video_geometry_writes_it_into_the_timeline(tmp_path) -> None:
    out = tmp_path / "out"
    run_cli("video", str(SAMPLES / "faces.mp4"), "--out", str(out), "--geometry", "--max-frames", "3", "--no-video")
    frames = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    faces = [face for frame in frames for face in frame["faces"] if not face["held"]]
    assert faces and all(set(face["pose"]) == {"yaw", "pitch", "roll"} and len(face["landmarks"]) == LANDMARKS
                         for face in faces)

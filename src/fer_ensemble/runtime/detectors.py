"""Face detectors by name, from plain settings dicts (what apps, the server and batch workers pass
around): ``{"detector": "haar" | "blazeface", **keyword arguments}``; no name means
``DEFAULT_DETECTOR``."""

from __future__ import annotations

from fer_ensemble.runtime.detection import LIVE_DETECTION, FaceDetector, HaarFaceDetector

DETECTOR_NAMES = ("haar", "blazeface")
DEFAULT_DETECTOR = "blazeface"
"""The detector of every app and of ``EmotionRecognizer()``, decided by measurement (README
"Finding faces": the user-cases, taiwan-posed, the group photos, the sample clip and the webcam
loop in one benchmark run). ``haar``, the OpenCV cascade of the system this project implements,
stays a first-class option."""
DETECTOR_HELP = ("blazeface: MediaPipe's BlazeFace (shipped in the package; finds turned, tilted, masked and "
                 "backlit faces; default); haar: OpenCV's frontal-face cascade, the detector of the system this "
                 "project implements")


def live_settings(settings: dict | None = None) -> dict:
    """The live-video preset of the detector ``settings`` name (the values `webcam` and `video`
    default to): Haar's on a 240 px copy, or BlazeFace's one look at the whole frame, both for
    faces of 80 px and more."""
    settings = settings or {}
    if settings.get("detector", DEFAULT_DETECTOR) == "blazeface":
        return {"detector": "blazeface", "min_face": LIVE_DETECTION["min_face"], "relative_min_face": 0.0,
                **{key: settings[key] for key in ("score_threshold",) if key in settings}}
    return {"detector": "haar", **LIVE_DETECTION}


def create_detector(settings: dict | None = None, threads: int | None = None) -> FaceDetector:
    """The detector ``settings`` name; ``threads`` bounds BlazeFace's ONNX Runtime (Haar runs on
    OpenCV's threads, set with ``cv2.setNumThreads``)."""
    settings = dict(settings or {})
    name = settings.pop("detector", DEFAULT_DETECTOR)
    if name == "haar":
        return HaarFaceDetector(**settings)
    if name == "blazeface":
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(threads=threads, **settings)
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")

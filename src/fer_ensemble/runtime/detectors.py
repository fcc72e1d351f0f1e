"""Face detectors by name, from plain settings dicts (what apps, the server and batch workers pass
around): ``{"detector": "haar" | "blazeface", **keyword arguments}``; no name means Haar."""

from __future__ import annotations

from fer_ensemble.runtime.detection import FaceDetector, HaarFaceDetector

DETECTOR_NAMES = ("haar", "blazeface")


def create_detector(settings: dict | None = None, threads: int | None = None) -> FaceDetector:
    """The detector ``settings`` name; ``threads`` bounds BlazeFace's ONNX Runtime (Haar runs on
    OpenCV's threads, set with ``cv2.setNumThreads``)."""
    settings = dict(settings or {})
    name = settings.pop("detector", "haar")
    if name == "haar":
        return HaarFaceDetector(**settings)
    if name == "blazeface":
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(threads=threads, **settings)
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")

"""``fer-ensemble demo``: the webcam when there is one and a display, else the bundled samples."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2

from fer_ensemble.apps.common import add_recognizer_arguments, bounded, warn
from fer_ensemble.media import SAMPLES
from fer_ensemble.runtime.detection import STILL_DETECTION


def camera_and_display(camera: int) -> bool:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    capture = cv2.VideoCapture(camera)
    try:
        return capture.isOpened()
    finally:
        capture.release()


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--camera", type=bounded(int, 0), default=0, help="camera index")
    parser.add_argument("--out", default="fer-demo", help="folder for the sample outputs")
    parser.add_argument("--samples", action="store_true", help="use the bundled samples even with a webcam")
    add_recognizer_arguments(parser)
    return parser


def run_demo(args: argparse.Namespace) -> int:
    if not args.samples and camera_and_display(args.camera):
        from fer_ensemble.apps.webcam import run_webcam

        return run_webcam(argparse.Namespace(**vars(args), source=None, no_window=False, max_frames=None,
                                             unpaced=False, snapshots=".", smoothing=0.5))
    from fer_ensemble.apps.predict import run_predict
    from fer_ensemble.apps.video import run_video

    out = Path(args.out)
    warn(f"no webcam with a display here: running on the bundled samples, outputs in {out}/")
    images = sorted(str(p) for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    common = {k: v for k, v in vars(args).items() if k not in ("out", "camera", "samples")}
    still = {**common, "detection_preset": dict(STILL_DETECTION), "min_face": STILL_DETECTION["min_face"],
             "relative_min_face": STILL_DETECTION["relative_min_face"]}  # the photos' preset, Haar's options as given
    images_status = run_predict(argparse.Namespace(**still, paths=images, out=str(out / "images"), json=False, csv=None,
                                   resting_face=None,
                                   no_bars=False))
    video_status = run_video(argparse.Namespace(**common, file=str(SAMPLES / "faces.mp4"), out=str(out / "video"),
                                          stride=1, max_frames=None, no_video=False, no_progress=True,
                                          smoothing=0.5, print_summary=False))
    warn(f"annotated images in {out / 'images'}, annotated video, timeline and plot in {out / 'video'}")
    return images_status or video_status

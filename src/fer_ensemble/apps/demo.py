"""``fer-ensemble demo``: the webcam when there is one and a display, else the bundled samples.

It calls what the other commands call (``EmotionRecognizer.predict`` and ``annotate`` for the
photos, ``analyse_video`` for the clip, ``watch`` for the webcam), with the same presets.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2

from fer_ensemble.apps.common import add_recognizer_arguments, bounded, build_recognizer, warn
from fer_ensemble.apps.exits import exit_code
from fer_ensemble.apps.predict import describe
from fer_ensemble.apps.video import analyse_video
from fer_ensemble.apps.webcam import FACES_PER_FRAME, open_camera, report, watch, window_available
from fer_ensemble.media.images import read_image, write_image
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.outputs import output_folder
from fer_ensemble.runtime.tracking import EMA_WEIGHT


def camera_and_display(camera: int) -> bool:
    """Whether there is a display, camera ``camera`` opens, and this OpenCV build can open a window
    (not the headless build): the demo's webcam view needs all three, else it runs on the samples."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    capture = cv2.VideoCapture(camera)
    try:
        if not capture.isOpened():
            return False
    finally:
        capture.release()
    return window_available()


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--camera", type=bounded(int, 0), default=0, help="camera index")
    parser.add_argument("--out", default="fer-demo", help="folder for the sample outputs")
    parser.add_argument("--samples", action="store_true", help="use the bundled samples even with a webcam")
    add_recognizer_arguments(parser)
    return parser


def run_demo(args: argparse.Namespace) -> int:
    if not args.samples and camera_and_display(args.camera):
        recognizer = build_recognizer(args, threads=args.threads or 1, ema_weight=EMA_WEIGHT)
        stats = watch(recognizer, open_camera(args.camera), budget=FACES_PER_FRAME)
        report(stats)
        return exit_code(failed=stats.frames == 0, found=stats.faces > 0, args=args)
    out = Path(args.out)
    warn(f"no webcam with a display here: running on the bundled samples, outputs in {out}/")
    faces = annotate_photos(args, output_folder(out / "images"))
    video = analyse_video(build_recognizer(args, ema_weight=EMA_WEIGHT), SAMPLES / "faces.mp4", out / "video",
                          progress=False)
    for line in video.problems():
        warn(line)
    warn(f"{faces} face(s) in the photos; {video.read} frame(s) of the clip read, {len(video.tracks)} track(s)")
    warn(f"annotated images in {out / 'images'}, annotated video, timeline and plot in {out / 'video'}")
    return exit_code(failed=bool(video.problems()), found=faces > 0 and bool(video.tracks), args=args)


def annotate_photos(args: argparse.Namespace, out: Path) -> int:
    """The bundled photos read with the photos' detector preset (as ``predict``), annotated into
    ``out``, a line each on stdout; returns the number of faces found."""
    recognizer = build_recognizer(args, still=True)
    found = 0
    for path in sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")):
        image = read_image(path)
        faces = recognizer.predict(image)
        write_image(out / path.name, recognizer.annotate(image, faces))
        print(describe(path, faces), flush=True)
        found += len(faces)
    return found

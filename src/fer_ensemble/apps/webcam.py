"""``fer-ensemble webcam``: live recognition in an OpenCV window (or headless with --no-window).

Capture runs in its own thread and keeps only the newest frame, so a slow frame is dropped
instead of queued. The Haar detector runs every ``--detect-every`` frames; in between, the
tracker's boxes are classified again. Keys: q / Esc quit, s snapshot, m toggle smoothing.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import add_recognizer_arguments, build_recognizer, warn
from fer_ensemble.apps.media import InputError
from fer_ensemble.runtime.drawing import draw_status

WINDOW = "fer-ensemble (q: quit, s: snapshot, m: smoothing)"


class LatestFrame:
    """A capture thread that keeps only the newest frame; a file source plays at its own fps."""

    def __init__(self, capture: cv2.VideoCapture, pace: float | None = None):
        self.capture = capture
        self.pace = pace
        self.frame: np.ndarray | None = None
        self.count = 0
        self.ended = False
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            ok, frame = self.capture.read()
            with self._condition:
                if not ok:
                    self.ended = True
                    self._condition.notify_all()
                    return
                self.frame, self.count = frame, self.count + 1
                self._condition.notify_all()
            if self.pace:
                time.sleep(max(0.0, self.pace - (time.perf_counter() - started)))

    def next(self, after: int, timeout: float = 5.0) -> tuple[int, np.ndarray | None]:
        """The newest frame numbered above ``after`` (waits for it); None once the source ended."""
        with self._condition:
            self._condition.wait_for(lambda: self.count > after or self.ended, timeout)
            if self.count > after:
                return self.count, self.frame
            return self.count, None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.capture.release()


def open_source(args: argparse.Namespace) -> tuple[cv2.VideoCapture, float | None]:
    if args.source:
        path = Path(args.source)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise InputError(f"{path}: not a readable video")
        return capture, 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 30.0)
    capture = cv2.VideoCapture(args.camera)
    if not capture.isOpened():
        raise InputError(f"camera {args.camera} cannot be opened (none attached, or in use)")
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, 640)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
    return capture, None


def window_available() -> bool:
    """False for opencv-python-headless or when there is no display."""
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        return False
    return True


def add_webcam_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--camera", type=int, default=0, help="camera index")
    parser.add_argument("--source", help="a video file played as if it were a camera")
    parser.add_argument("--no-window", action="store_true", help="headless: print JSON lines instead")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--detect-every", type=int, default=2, help="run the detector every N frames")
    parser.add_argument("--snapshots", default=".", help="folder for snapshots (key s)")
    add_recognizer_arguments(parser, smoothing=0.5)
    return parser


def run_webcam(args: argparse.Namespace) -> int:
    capture, pace = open_source(args)
    recognizer = build_recognizer(args)
    show = not args.no_window
    if show and not window_available():
        capture.release()
        raise InputError("this OpenCV build cannot open windows (opencv-python-headless, or no display): "
                         "use --no-window, or pip install 'opencv-python<5' in place of the headless build")
    source = LatestFrame(capture, pace)
    smoothing = recognizer.smoothing
    shown, last, dropped = 0, 0, 0
    fps, started = 0.0, time.perf_counter()
    try:
        while args.max_frames is None or shown < args.max_frames:
            number, frame = source.next(last)
            if frame is None:
                break
            dropped += max(0, number - last - 1)
            last = number
            tick = time.perf_counter()
            boxes = None if shown % max(1, args.detect_every) == 0 else [t.box for t in recognizer.tracker.tracks
                                                                        if t.missed == 0]
            faces = recognizer.track(frame, boxes)
            shown += 1
            fps = 0.9 * fps + 0.1 / max(time.perf_counter() - tick, 1e-6) if shown > 1 else 1 / max(
                time.perf_counter() - tick, 1e-6)
            if not show:
                print(json.dumps({"frame": number, "faces": [f.to_dict() for f in faces]}), flush=True)
                continue
            canvas = recognizer.annotate(frame, faces)
            draw_status(canvas, f"{fps:.0f} fps  {len(faces)} face(s)  smoothing "
                                f"{'on' if recognizer.smoothing < 1 else 'off'}")
            cv2.imshow(WINDOW, canvas)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                break
            if key == ord("s"):
                path = Path(args.snapshots) / f"fer-snapshot-{int(time.time())}.png"
                cv2.imwrite(str(path), canvas)
                warn(f"snapshot: {path}")
            if key == ord("m"):
                recognizer.smoothing = 1.0 if recognizer.smoothing < 1 else smoothing
    finally:
        source.stop()
        if show:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - started
    warn(f"{shown} frame(s) in {elapsed:.1f} s ({shown / max(elapsed, 1e-9):.1f} fps), "
         f"{dropped} dropped while busy")
    if shown == 0:
        warn("no frame arrived from the source")
        return 1
    return 0

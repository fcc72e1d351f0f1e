"""``fer-ensemble webcam``: live recognition in an OpenCV window (or headless with --no-window).

Three stages overlap: capture runs in its own thread and keeps only the newest frame, so a slow
frame is dropped instead of queued; the recognizer's face detector (BlazeFace by default,
``--detector`` chooses) runs in another thread on the newest frame it can get (the second core);
the main thread classifies every frame with the latest boxes (tracked, smoothed) and draws. Keys:
q / Esc quit, s snapshot, m toggle smoothing, r take each face on screen now as that person's
resting face (its label then reads "vs rest"), c clear them, a toggle the automatic resting face
(each face's own calm frames), e start (or cancel) a guided enrolment of the face on screen (its
prompts on the frame; x takes an expression again), after which that face is read through its new
profile (its label says "profile"; ``--save-profile FILE`` keeps it). ``--enrol`` starts one at
the first frame (with ``--no-window``: the prompts on stderr, the state in each JSON line).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import add_recognizer_arguments, bounded, build_recognizer, warn
from fer_ensemble.apps.enrol import format_self_check
from fer_ensemble.apps.exits import add_exit_arguments, exit_code
from fer_ensemble.errors import InputError, Interrupted, OutputError, UserError, json_text
from fer_ensemble.media.decoder import decoder_log
from fer_ensemble.media.images import write_image
from fer_ensemble.media.video import open_video
from fer_ensemble.outputs import check_output_file, output_file
from fer_ensemble.runtime.drawing import draw_prompt, draw_status
from fer_ensemble.runtime.enrolment import EnrolmentOptions, EnrolmentState, GuidedEnrolment, enrolled_track
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.geometry import FaceGeometry
from fer_ensemble.runtime.profile import PROFILE_FORMAT, ProfileError, require_fitting
from fer_ensemble.runtime.recognizer import with_geometry
from fer_ensemble.runtime.stream import FaceStream, later_time
from fer_ensemble.runtime.tracking import EMA_WEIGHT

WINDOW = "fer-ensemble (q: quit, s: snapshot, m: smoothing, r: resting face, c: clear, a: auto, e: enrol)"

FACES_PER_FRAME = 2
"""The webcam's default budget of faces classified per frame (``--faces-per-frame``): one or two
faces are read in every frame; with four, each every other frame, which keeps the loop above 60
frames per second on two cores (docs/speed.md, "Webcam pipeline": the benchmark's rows with and without it)."""


class LatestFrame:
    """A capture thread that keeps only the newest frame; a file source plays at its own fps.

    ``on_demand`` (benchmarks) reads the next frame only once the classifier has taken the last,
    so a file is not decoded faster than it is used.
    """

    def __init__(self, capture: cv2.VideoCapture, pace: float | None = None, on_demand: bool = False,
                 file_time: bool = False):
        self.capture = capture
        self.pace = pace
        self.on_demand = on_demand
        self.file_time = file_time  # a file's frames are timed by the file, not by when they were read
        self.frame: np.ndarray | None = None
        self.time_s = 0.0  # the stream's timestamp: when the newest frame was read (time.perf_counter), or its time in the file
        self.count = 0
        self.taken = 0
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
                stamp = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if self.file_time else started
                self.frame, self.count, self.time_s = frame, self.count + 1, stamp
                self._condition.notify_all()
                if self.on_demand:
                    self._condition.wait_for(lambda: self.taken >= self.count or self._stop.is_set())
            if self.pace:
                time.sleep(max(0.0, self.pace - (time.perf_counter() - started)))

    def next(self, after: int, timeout: float = 5.0, take: bool = False) -> tuple[int, np.ndarray | None]:
        """The newest frame numbered above ``after`` (waits for it); None once the source ended.
        ``take`` marks it as consumed by the classifier."""
        number, frame, _ = self.next_timed(after, timeout, take)
        return number, frame

    def next_timed(self, after: int, timeout: float = 5.0,
                   take: bool = False) -> tuple[int, np.ndarray | None, float]:
        """``next``, and the frame's time in seconds: when it was read (``time.perf_counter``), or its
        time in the file with ``file_time``."""
        with self._condition:
            self._condition.wait_for(lambda: self.count > after or self.ended, timeout)
            if self.count <= after:
                return self.count, None, self.time_s
            if take:
                self.taken = self.count
                self._condition.notify_all()
            return self.count, self.frame, self.time_s

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=2)
        self.capture.release()


class DetectorThread:
    """Detects faces on the newest frame, over and over, beside the classifier."""

    def __init__(self, recognizer, source: LatestFrame):
        self.recognizer, self.source = recognizer, source
        self.boxes: list = []
        self.detections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = 0
        while not self._stop.is_set():
            number, frame = self.source.next(last, timeout=0.5)
            if frame is None:
                if self.source.ended:
                    return
                continue
            last = number
            self.boxes = self.recognizer.detect(frame)  # one reference swap: no lock needed
            self.detections += 1

    def wait_first(self, timeout: float = 5.0) -> None:
        deadline = time.perf_counter() + timeout
        while self.detections == 0 and not self.source.ended and time.perf_counter() < deadline:
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def open_source(args: argparse.Namespace) -> tuple[cv2.VideoCapture, float | None]:
    """``--source`` (paced at its own fps unless ``--unpaced``) or ``--camera`` (0 when not given);
    with the seconds per frame to pace at (None: as fast as frames come)."""
    if args.source:
        capture = open_video(Path(args.source))
        return capture, None if args.unpaced else 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 30.0)
    return open_camera(args.camera or 0), None


def open_camera(index: int) -> cv2.VideoCapture:
    """Camera ``index`` at 640x480; InputError when it cannot be opened."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise InputError(f"camera {index} cannot be opened (none attached, or in use)")
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, 640)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
    return capture


def window_available() -> bool:
    """False for opencv-python-headless or when there is no display."""
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        return False
    return True


def add_webcam_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--camera", type=bounded(int, 0), default=None, help="camera index (default 0)")
    parser.add_argument("--source", help="a video file played as if it were a camera (not with --camera)")
    parser.add_argument("--no-window", action="store_true", help="headless: print JSON lines instead")
    parser.add_argument("--max-frames", type=bounded(int, 1), default=None, help="stop after this many frames")
    parser.add_argument("--unpaced", action="store_true",
                        help="with --source: no playback pacing, the next frame as soon as one is "
                             "classified (measures throughput)")
    parser.add_argument("--snapshots", default=".", help="folder for snapshots (key s)")
    parser.add_argument("--faces-per-frame", type=bounded(int, 0), default=FACES_PER_FRAME,
                        help="classify at most this many faces per frame; the others keep their latest "
                             "answer, the longest-waiting read next (default %(default)s: with four faces each "
                             "is read every other frame; 0: every face every frame)")
    parser.add_argument("--enrol", action="store_true",
                        help="start a guided enrolment of the face in view at the first frame (the window's e key "
                             "starts one at any time): it asks for each expression in turn, captures a few frames "
                             "of each, then reads that face through the profile it made (docs/video.md)")
    parser.add_argument("--save-profile", metavar="FILE",
                        help="write the profile a guided enrolment makes to FILE (JSON; it holds face embeddings: "
                             "personal data, written only here)")
    parser.add_argument("--enrol-captures", type=bounded(int, 1), default=EnrolmentOptions.captures,
                        help="frames captured per expression in a guided enrolment (default %(default)s)")
    add_exit_arguments(parser)
    add_recognizer_arguments(parser, ema_weight=EMA_WEIGHT)
    return parser


def run_webcam(args: argparse.Namespace) -> int:
    if args.source and args.camera is not None:
        raise UserError("--source and --camera name two inputs: give one")
    log = decoder_log() if args.source else None  # a damaged --source file: FFmpeg's errors counted
    reported = log.sync() if log else 0
    save_profile = check_enrol_arguments(args)
    capture, pace = open_source(args)
    recognizer = build_recognizer(args, threads=args.threads or 1)  # one core classifies, the other detects
    enroller = Enroller(recognizer, EnrolmentOptions(captures=args.enrol_captures), save_profile)
    stats = watch(recognizer, capture, pace, show=not args.no_window, snapshots=Path(args.snapshots), max_frames=args.max_frames,
                  budget=args.faces_per_frame or None, on_demand=bool(args.source and args.unpaced),
                  enroller=enroller, enrol=args.enrol, file_time=bool(args.source))
    report(stats)
    damaged = bool(log and log.settled_errors() > reported)
    if damaged:
        warn(f"{args.source}: the decoder reported errors (a damaged file: some frames may repeat the last good "
             "picture)")
    unfinished = args.enrol and args.no_window and not enroller.finished
    if unfinished and not enroller.failed:
        warn("the guided enrolment did not finish before the source ended: no profile was made")
    return exit_code(failed=stats.frames == 0 or damaged or unfinished, found=stats.faces > 0, args=args)


def check_enrol_arguments(args: argparse.Namespace) -> Path | None:
    """``--save-profile`` as a file that may be written (never an input, never a file of the user's),
    after the checks of ``--enrol``: scikit-learn is there to fit a profile, and a run without a
    window has a way to start one. None without ``--save-profile``."""
    if args.save_profile and args.no_window and not args.enrol:
        raise UserError("--save-profile without a window needs --enrol (the window's e key starts one otherwise)")
    if args.enrol or args.save_profile:
        require_fitting()
    if not args.save_profile:
        return None
    inputs = [p for p in (args.source, args.profile, args.ensemble) if p]
    check_output_file(args.save_profile, inputs, "--save-profile", '{"format": "' + PROFILE_FORMAT)
    return output_file(args.save_profile, "--save-profile")  # its folder made now, not after the enrolment


class Enroller:
    """The webcam's guided enrolment (``GuidedEnrolment``) in a stream: started by ``--enrol`` or the
    ``e`` key, fed every frame, and once done the profile it made is saved (``save_to``), printed
    with its self-check and given to the enrolled face's track (``FaceStream.set_profile``)."""

    SHOW_S = 8.0
    """How long the self-check stays on the frame after an enrolment."""

    def __init__(self, recognizer, options: EnrolmentOptions, save_to: Path | None):
        self.recognizer, self.options, self.save_to = recognizer, options, save_to
        self.enrolment: GuidedEnrolment | None = None
        self.finished = False
        self.failed = False
        self.summary: list[str] = []
        self.summary_until = 0.0
        self._said = ""

    def start(self) -> None:
        """A new enrolment from the next frame on (one already running is dropped); a line on stderr
        instead when one cannot be fitted here (no scikit-learn, members without embeddings)."""
        try:
            self.enrolment = GuidedEnrolment(self.recognizer, options=self.options,
                                             geometry=self.recognizer.geometry)  # --geometry: blendshapes too
        except ProfileError as error:
            warn(f"guided enrolment: {error}")
            return
        self._said = ""
        warn(f"guided enrolment: {len(self.options.classes)} expressions, {self.options.captures} frame(s) each "
             "(x: take one again, e: cancel)")

    def key(self, key: str) -> None:
        """``e``: start, or cancel the one running; ``x``: take the current (or previous) expression again."""
        if key == "e" and self.enrolment is not None:
            self.enrolment = None
            warn("guided enrolment cancelled")
        elif key == "e":
            self.start()
        elif key == "x" and self.enrolment is not None:
            warn(f"again: {self.enrolment.redo()}")

    def frame(self, stream: FaceStream, frame: np.ndarray, time_s: float) -> EnrolmentState | None:
        """Feed one frame at ``time_s``; None when no enrolment runs. The prompt goes to stderr when it changes."""
        if self.enrolment is None:
            return None
        state = self.enrolment.update(frame, time_s)
        said = state.message if state.phase != "countdown" else f"{state.step}/{state.steps} show {state.expression}"
        if said != self._said:
            warn(said)
            self._said = said
        if state.phase == "done":
            self._done(stream, state, time_s)
        elif state.phase == "failed":
            self.enrolment, self.failed = None, True
        return state

    def _done(self, stream: FaceStream, state: EnrolmentState, time_s: float) -> None:
        assert self.enrolment is not None and self.enrolment.profile is not None
        profile = self.enrolment.profile
        self.enrolment, self.finished = None, True
        where = "not saved (--save-profile FILE keeps it)"
        if self.save_to is not None:
            try:
                profile.save(self.save_to)
                where = f"saved to {self.save_to}"
            except OSError as error:  # the profile stays in use for this session
                where = f"NOT saved: {self.save_to}: {error.strerror or error}"
        self.summary = self_check_lines(profile.self_check, where)
        self.summary_until = time_s + self.SHOW_S
        for line in format_self_check(profile.self_check, where, []).splitlines():
            warn(line)
        track_id = enrolled_track(stream.tracker.tracks, state.box)
        if track_id is None:
            warn("the enrolled face is not in view: no face is read through the profile yet")
        else:
            stream.set_profile(track_id, profile)
            warn(f"face #{track_id} is read through the profile from now on")

    def draw(self, canvas: np.ndarray, state: EnrolmentState | None, time_s: float) -> None:
        """The prompt (or the self-check after an enrolment) on ``canvas``."""
        if state is not None and state.phase != "done":
            draw_prompt(canvas, [state.message], refused=state.refused is not None)
        elif time_s < self.summary_until:
            draw_prompt(canvas, self.summary)


def self_check_lines(check: dict, where: str) -> list[str]:
    """An enrolment's self-check in a few short lines for the frame (its table goes to stderr)."""
    frames = sum(c["photos"] for c in check.values())
    right = sum(c["read_right"] for c in check.values())
    plain = sum(c["ensemble_alone"] for c in check.values())
    cells = [f"{name} {c['read_right']}/{c['photos']}" for name, c in check.items()]
    return [f"profile of {frames} frames, {where}",
            f"self-check (each frame read by a profile of the others): {right} of {frames} right, "
            f"the ensemble alone {plain}",
            "  ".join(cells[:4]), "  ".join(cells[4:])]


def watch(recognizer, capture: cv2.VideoCapture, pace: float | None = None, show: bool = True,
          snapshots: Path = Path("."), max_frames: int | None = None, budget: int | None = FACES_PER_FRAME,
          on_demand: bool = False, enroller: Enroller | None = None, enrol: bool = False,
          file_time: bool = False) -> LoopStats:
    """The live view of ``capture`` until it ends or the user quits: the window with its keys when
    ``show``, else a JSON line per frame on stdout. ``pace``: seconds per frame of a file source
    (None: as frames come); ``budget``: faces classified per frame (None: all); ``on_demand``: read
    the next frame only once the last is classified; ``enroller``: the guided enrolment (``e`` key),
    started at once with ``enrol``; ``file_time``: frames are timed by the file (a ``--source``), not
    by when they were read. Releases ``capture``. UserError when ``show``
    and this OpenCV build cannot open a window. Ctrl-C ends it, the stats saying so (``interrupted``)."""
    if show and not window_available():
        capture.release()
        raise UserError("this OpenCV build cannot open windows (opencv-python-headless, or no display): "
                        "use --no-window, or pip install 'opencv-python<5' in place of the headless build")
    source = LatestFrame(capture, pace, on_demand=on_demand, file_time=file_time)
    detector = DetectorThread(recognizer, source)
    stream = recognizer.stream()
    smoothing_s = stream.options.smoothing_s
    window = {"fps": 0.0}
    enroller = enroller or Enroller(recognizer, EnrolmentOptions(), None)
    if enrol:
        enroller.start()

    def show_frame(number: int, frame: np.ndarray, faces: list) -> bool:
        """Draw or print one frame; False when the user quits."""
        assert stream.time_s is not None  # the frame was just read at it
        state = enroller.frame(stream, frame, stream.time_s)
        if not show:
            line = {"frame": number, "faces": [f.to_dict() for f in faces]}
            print(json_text(line if state is None else {**line, "enrolment": state.to_dict()}), flush=True)
            return True
        canvas = recognizer.annotate(frame, faces)
        enroller.draw(canvas, state, stream.time_s)
        draw_status(canvas, f"{window['fps']:.0f} fps  {len(faces)} face(s)  smoothing "
                            f"{'on' if stream.options.smoothing_s > 0 else 'off'}"
                            + ("  auto resting face" if stream.options.auto_resting_face else ""))
        cv2.imshow(WINDOW, canvas)
        key = cv2.waitKey(1) & 0xFF
        if key == ord("s"):
            path = snapshots / f"fer-snapshot-{int(time.time())}.png"
            try:
                write_image(path, canvas)
                warn(f"snapshot: {path}")
            except OutputError as error:
                warn(str(error))
        if key == ord("m"):
            stream.options = replace(stream.options, smoothing_s=0.0 if stream.options.smoothing_s else smoothing_s)
        if key in (ord("r"), ord("c"), ord("a")):
            resting_face_key(stream, chr(key))
        if key in (ord("e"), ord("x")):
            enroller.key(chr(key))
        return key not in (ord("q"), 27)

    stats = LoopStats(frames=0, seconds=0.0, detections=0, dropped=0)
    try:
        return live_loop(stream, source, detector, show_frame, max_frames, window, budget, stats)
    except KeyboardInterrupt:  # Ctrl-C: the run's closing line still comes (``run_webcam``)
        stats.interrupted = True
        return stats
    finally:
        detector.stop()
        source.stop()
        if show:
            cv2.destroyAllWindows()


def report(stats: LoopStats) -> None:
    """The run's one summary line on stderr (and a second when no frame came); then, when Ctrl-C
    ended the run, ``Interrupted`` (the command exits 130)."""
    warn(f"{stats.frames} frame(s) in {stats.seconds:.1f} s ({stats.fps:.1f} fps), {stats.faces} face(s), "
         f"{stats.detections} detector passes, {stats.dropped} frame(s) dropped while busy")
    if stats.frames == 0:
        warn("no frame arrived from the source")
    if stats.interrupted:
        raise Interrupted(f"after {stats.frames} frame(s)")


def resting_face_key(stream: FaceStream, key: str) -> list[int]:
    """``r``: every face on screen now becomes its own resting face; ``c``: forget them all;
    ``a``: toggle the automatic resting face. Returns the track ids changed (and says so on stderr)."""
    if key == "a":
        changed = stream.set_auto_resting_face(not stream.options.auto_resting_face)
        warn(f"automatic resting face {'on' if stream.options.auto_resting_face else 'off'}")
        return changed
    if key == "r":
        taken = stream.take_resting_face()
        warn(f"resting face taken for face(s) {', '.join(f'#{t}' for t in taken)}" if taken
             else "no face on screen to take as a resting face")
        return taken
    cleared = stream.clear_resting_face()
    warn("resting faces cleared")
    return cleared


class LatestGeometry:
    """The webcam's face geometry (``--geometry``), read on a thread of its own as fast as it goes
    and never waited for: each frame, a free reader takes that frame's boxes, and every face shows
    its track's latest geometry, its landmarks moved with the face's box since the frame they were
    read on (so the loop keeps the classifier's pace; ``reads`` counts the frames read). A track whose
    face the landmarks model last found no face in shows none; a track that ended is forgotten."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="geometry")
        self.job: Future | None = None
        self.job_faces: list[tuple[int | None, tuple]] = []  # (track, box) of the frame being read
        self.latest: dict[int, tuple[FaceGeometry, tuple]] = {}
        self.reads = 0

    def start(self, frame: np.ndarray, boxes: list) -> bool:
        """Take what the reader finished, then hand it ``frame``'s ``boxes`` if it is free (True)."""
        if self.job is not None and self.job.done():
            for (track, box), shape in zip(self.job_faces, self.job.result()):
                if track is None:
                    continue
                if shape is None:
                    self.latest.pop(track, None)
                else:
                    self.latest[track] = (shape, box)
            self.job, self.reads = None, self.reads + 1
        if self.job is not None or not boxes:
            return False
        self.job = self.pool.submit(self.reader.read, frame, boxes)
        return True

    def show(self, faces: list[Face], started: bool, boxes: int, alive: set[int]) -> list[Face]:
        """``faces`` (the frame's, from ``FaceStream.update``: one live face per box first), each
        given its track's latest geometry, in place; with ``started``, the first ``boxes`` faces'
        tracks and boxes are what the reader's results will belong to."""
        if started:
            self.job_faces = [(face.track_id, face.box) for face in faces[:boxes]]
        self.latest = {track: kept for track, kept in self.latest.items() if track in alive}
        for face in faces:
            if face.track_id is None or (kept := self.latest.get(face.track_id)) is None:
                continue
            shape, then = kept
            moved = (face.box[0] + face.box[2] / 2 - then[0] - then[2] / 2,
                     face.box[1] + face.box[3] / 2 - then[1] - then[3] / 2, 0.0)
            with_geometry([face], [FaceGeometry(shape.landmarks + np.asarray(moved, np.float32), shape.pose,
                                                shape.blendshapes, shape.presence)])
        return faces

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@dataclass
class LoopStats:
    frames: int
    seconds: float
    detections: int
    dropped: int
    faces: int = 0  # summed over frames
    interrupted: bool = False  # stopped by Ctrl-C
    geometry_reads: int = 0  # frames whose landmarks were read (``LatestGeometry``; --geometry)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def live_loop(stream: FaceStream, source: LatestFrame, detector: DetectorThread, on_frame=None,
              max_frames: int | None = None, window: dict | None = None, budget: int | None = None,
              stats: LoopStats | None = None) -> LoopStats:
    """Classify the newest frame with the detector's latest boxes until the source ends, at most
    ``budget`` faces per frame (``FaceStream.update``, at the time the frame was read; None: every face).
    When the stream's recognizer reads geometry (``--geometry``), the landmarks are read on a second
    thread as fast as it goes, never waited for, and each frame's faces show their track's latest
    (``LatestGeometry``): the loop keeps the classifier's pace. Counts into ``stats``
    as it goes (a new one when None), so a caller that catches Ctrl-C (KeyboardInterrupt, raised
    through) still has the counts so far."""
    stats = stats if stats is not None else LoopStats(frames=0, seconds=0.0, detections=0, dropped=0)
    started = time.perf_counter()
    reader = detector.recognizer.geometry  # the recognizer of the stream and of the detector thread
    geometry = LatestGeometry(reader) if reader is not None else None
    try:
        _loop(stats, stream, source, detector, on_frame, max_frames, window, budget, geometry)
    finally:
        stats.seconds, stats.detections = time.perf_counter() - started, detector.detections
        if geometry is not None:
            geometry.close()
            stats.geometry_reads = geometry.reads
    return stats


def _loop(stats: LoopStats, stream: FaceStream, source: LatestFrame, detector: DetectorThread, on_frame,
          max_frames: int | None, window: dict | None, budget: int | None,
          geometry: LatestGeometry | None = None) -> None:
    """``live_loop``'s frames, counted in ``stats`` as they go; with ``geometry``, landmarks are read
    there, on a thread of their own, and each frame shows each face's latest."""
    detector.wait_first()
    last = 0
    while max_frames is None or stats.frames < max_frames:
        number, frame, time_s = source.next_timed(last, take=True)
        if frame is None:
            break
        stats.dropped += max(0, number - last - 1)
        last = number
        tick = time.perf_counter()
        boxes = detector.boxes
        started = geometry is not None and geometry.start(frame, boxes)
        faces = stream.update(frame, later_time(time_s, stream.time_s), boxes, budget)
        if geometry is not None:  # the live faces come first, one per box, in the boxes' order
            geometry.show(faces, started, len(boxes), {track.track_id for track in stream.tracker.tracks})
            stream.keep_geometry(faces)  # a profile read with blendshapes takes each track's latest
        stats.frames += 1
        stats.faces += len(faces)
        if window is not None:
            instant = 1 / max(time.perf_counter() - tick, 1e-6)
            window["fps"] = instant if stats.frames == 1 else 0.9 * window["fps"] + 0.1 * instant
        if on_frame is not None and not on_frame(number, frame, faces):
            break

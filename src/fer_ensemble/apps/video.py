"""``fer-ensemble video FILE``: annotated video, per-frame timeline, per-track plot and summary."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fer_ensemble import __version__
from fer_ensemble.apps.common import add_recognizer_arguments, bounded, build_recognizer, warn
from fer_ensemble.apps.exits import add_exit_arguments, exit_code
from fer_ensemble.errors import InputError, Interrupted, OutputError, json_text
from fer_ensemble.media.decoder import decoder_log
from fer_ensemble.media.images import write_image
from fer_ensemble.media.video import VideoFrames
from fer_ensemble.outputs import (
    RowWriter,
    check_apart,
    check_manifest,
    output_folder,
    partial_path,
    publish,
    recorded_args,
    write_manifest,
    write_whole,
)
from fer_ensemble.runtime.drawing import COLORS
from fer_ensemble.runtime.rows import CSV_DECIMALS, FaceRow, face_columns, summarize_tracks, timeline_rows
from fer_ensemble.runtime.stream import later_time
from fer_ensemble.runtime.tracking import EMA_WEIGHT


def add_video_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("file", help="a video file")
    parser.add_argument("--out", help="output folder (default: <video name>-fer beside the video; never the "
                                      "video's own folder)")
    parser.add_argument("--stride", type=bounded(int, 1), default=1, help="process every Nth frame")
    parser.add_argument("--max-frames", type=bounded(int, 1), default=None, help="stop after this many frames")
    parser.add_argument("--no-video", action="store_true", help="skip the annotated video")
    parser.add_argument("--no-progress", action="store_true")
    add_exit_arguments(parser)
    add_recognizer_arguments(parser, ema_weight=EMA_WEIGHT)
    return parser


TICKS = (0.0, 0.05, 0.25, 0.5, 1.0)
FONT, SMALL = cv2.FONT_HERSHEY_SIMPLEX, 0.38
HEADER = 26  # pixels above the first panel: the title


def tracks_title(shown: int, total: int) -> str:
    """The plot's title: how many tracks it shows, of how many when not all ("the 6 longest of 160
    tracks ...")."""
    if total == 0:
        return "no faces"
    if shown < total:
        return f"the {shown} longest of {total} tracks (summary.json and timeline.csv have them all)"
    return f"{total} track{'s' if total > 1 else ''}"


def x_axis_labels(end: float, left: int, plot_w: int) -> list[tuple[str, int, int]]:
    """The x axis's labels as (text, x, width) in pixels: six ticks' seconds, each centred on its tick,
    then the unit, after the last tick's label, so that no two overlap."""
    labels = []
    for k in range(6):
        text = f"{k / 5 * end:.1f}"
        width = cv2.getTextSize(text, FONT, SMALL, 1)[0][0]
        labels.append((text, left + round(k / 5 * plot_w) - width // 2, width))
    _, x, width = labels[-1]
    return [*labels, ("s", x + width + 6, cv2.getTextSize("s", FONT, SMALL, 1)[0][0])]


def plot_timeline(timeline: list[dict], classes: tuple[str, ...], path: Path, max_tracks: int = 6) -> None:
    """One panel per track, for the ``max_tracks`` longest (by frames seen): each emotion's
    probability over time (drawn with OpenCV), under a title that says how many of how many tracks
    it shows; held faces (``held``) left out. The y axis is square-root scaled (ticks labelled in probability), so rare emotions'
    small values stay visible."""
    tracks: dict[int, list] = {}
    for row in timeline:
        for face in (f for f in row["faces"] if not f.get("held")):  # as detected, like summary.json
            tracks.setdefault(face["track_id"], []).append((row["time"], face["probabilities"]))
    longest = sorted(sorted(tracks, key=lambda t: -len(tracks[t]))[:max_tracks])  # longest, by id
    shown: list[int | None] = [*longest] or [None]
    width, panel, left, right = 900, 180, 70, 130
    plot_w, plot_h = width - left - right, panel - 40
    end = max((row["time"] for row in timeline), default=1.0) or 1.0
    image = np.full((HEADER + panel * len(shown) + 30, width, 3), 255, np.uint8)
    ink, grid, font = (40, 40, 40), (225, 225, 225), FONT
    cv2.putText(image, tracks_title(len(longest), len(tracks)), (left, 18), font, 0.5, ink, 1, cv2.LINE_AA)

    def y_of(top: int, p: float) -> int:
        return round(top + (1 - np.sqrt(p)) * plot_h)

    for i, track_id in enumerate(shown):
        top = HEADER + i * panel + 20
        for tick in TICKS:
            y = y_of(top, tick)
            cv2.line(image, (left, y), (left + plot_w, y), grid, 1)
            cv2.putText(image, f"{tick:g}", (left - 38, y + 4), font, SMALL, ink, 1, cv2.LINE_AA)
        cv2.rectangle(image, (left, top), (left + plot_w, top + plot_h), ink, 1)
        cv2.putText(image, f"track #{track_id}" if track_id is not None else "no faces", (left, top - 6), font,
                    0.45, ink, 1, cv2.LINE_AA)
        points = tracks[track_id] if track_id is not None else []
        means = {e: np.mean([p[e] for _, p in points]) if points else 0.0 for e in classes}
        for emotion in sorted(classes, key=lambda e: -means[e]):  # the rare ones drawn last, on top
            xy = np.array([[left + t / end * plot_w, y_of(top, p[emotion])] for t, p in points], np.int32)
            if len(xy) > 1:
                cv2.polylines(image, [xy], False, COLORS[emotion], 2, cv2.LINE_AA)
            elif len(xy) == 1:
                cv2.circle(image, tuple(int(v) for v in xy[0]), 3, COLORS[emotion], -1)
    for j, emotion in enumerate(classes):  # legend
        y = HEADER + 30 + 18 * j
        cv2.line(image, (width - right + 12, y - 4), (width - right + 32, y - 4), COLORS[emotion], 3)
        cv2.putText(image, emotion, (width - right + 38, y), font, 0.45, ink, 1, cv2.LINE_AA)
    bottom = image.shape[0] - 8
    for text, x, _ in x_axis_labels(end, left, plot_w):  # x axis: seconds, then the unit
        cv2.putText(image, text, (x, bottom), font, SMALL, ink, 1, cv2.LINE_AA)
    for j, line in enumerate(("y: probability,", "square-root", "scale")):
        cv2.putText(image, line, (width - right + 12, HEADER + 30 + 18 * (len(classes) + 1 + j)), font, SMALL,
                    ink, 1, cv2.LINE_AA)
    write_image(path, image)


class TimedWriter:
    """An mp4 at a constant ``fps`` that shows each frame at its source time: a frame is repeated
    until the next one is due and skipped when the next is already due, so a variable-frame-rate
    source keeps its timing (and a constant one is written frame for frame)."""

    def __init__(self, path: Path, fps: float, shape: tuple[int, ...]):
        self.path, self.partial = path, partial_path(path)  # renamed onto path by release (one staging rule)
        self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter.fourcc(*"mp4v"), fps, (shape[1], shape[0]))
        if not self.writer.isOpened():
            raise OutputError(f"{path}: cannot write the annotated video (no permission, or no mp4v encoder)")
        self.fps, self.written = fps, 0
        self.last: np.ndarray | None = None

    def write(self, image: np.ndarray, time_s: float) -> None:
        slot = round(time_s * self.fps)  # the output frame this source frame is due at
        while self.last is not None and self.written < slot:
            self.writer.write(self.last)
            self.written += 1
        if self.written <= slot:
            self.writer.write(image)
            self.written += 1
        self.last = image

    def release(self) -> None:
        """Close the mp4 (its index written: playable) and rename it onto its path."""
        self.writer.release()
        try:
            publish(self.partial, self.path)
        except OutputError:
            self.partial.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Close and remove the partial mp4: an earlier one at its path stays as it was."""
        self.writer.release()
        self.partial.unlink(missing_ok=True)


@dataclass
class VideoReport:
    """What ``analyse_video`` read and wrote: frames read and expected (0: unknown), the frames
    processed, the per-track ``summary.json``, the time from which the decoder reported damage
    (seconds; None: none) and the output folder."""

    path: Path
    out: Path
    read: int
    expected: int
    processed: int
    summary: dict[str, Any]
    damaged_at_s: float | None

    @property
    def tracks(self) -> dict:
        return self.summary["tracks"]

    def problems(self, max_frames: int | None = None) -> list[str]:
        """One line per problem: an early end (unless stopped at ``max_frames``), damage."""
        found = []
        if self.expected and max_frames is None and self.read < self.expected:
            found.append(f"{self.path}: the video ended early, at frame {self.read} of {self.expected}")
        if self.damaged_at_s is not None:
            found.append(f"{self.path}: the decoder reported errors from about {self.damaged_at_s:.2f} s on (a "
                         "damaged file: its frames from there may repeat the last good picture)")
        return found


def analyse_video(recognizer, path: Path, out: Path, stride: int = 1, max_frames: int | None = None,
                  write_video: bool = True, progress: bool = True,
                  on_folder: Callable[[Path], object] | None = None) -> VideoReport:
    """Track and read every ``stride``-th frame of ``path`` (up to ``max_frames`` read), writing
    into the folder ``out`` (created): ``timeline.csv`` and ``timeline.jsonl`` (a row per frame and
    face, at the frame's own time; ``relative`` 1 where the face was read against its resting face,
    ``held`` 1 where the detector missed it and its last box and answer are kept),
    ``summary.json`` (per track, held faces left out), ``timeline.png`` and, with ``write_video``, ``annotated.mp4``.
    InputError when the file cannot be opened or not one frame decodes (then no folder is made),
    OutputError when an output cannot be written. Ctrl-C (KeyboardInterrupt) stops the reading: every
    output is written for the frames read, then ``Interrupted`` says so. ``on_folder(out)`` is called
    once the folder is made, before any output (the command writes its manifest there)."""
    frames = VideoFrames(path, stop=max_frames, log=decoder_log())  # the command's watch, when it set one
    stream = iter(frames)
    first = next(stream, None)
    if first is None:  # opened but nothing decodes (a text file named .jpg, a file damaged from its start)
        raise InputError(f"{path}: no frame could be decoded (not a video, or damaged from its start)")
    out = output_folder(out)  # once a frame decoded: a wrong path or file leaves no empty folder behind
    if on_folder is not None:
        on_folder(out)
    fps, expected = frames.fps, frames.frame_count
    writer = None
    timeline: list[dict] = []
    face_stream = recognizer.stream(frame_interval_s=1 / fps)  # each video its own tracks, from id 1
    bar = tqdm(total=expected, unit="frame", disable=None if progress else True,  # None: a terminal only
               desc=path.name)
    interrupted = False
    geometry = bool(recognizer.geometry)
    columns = ["frame", "time_s", "track_id", "relative", *face_columns(geometry)]
    try:
        with RowWriter(out / "timeline.csv", columns, decimals=CSV_DECIMALS) as rows:
            try:
                for index, frame in itertools.chain([first], stream):
                    bar.update(1)
                    if index % stride:
                        continue
                    time_s = frames.time_s  # the frame's own time: a variable frame rate keeps its timing
                    faces = face_stream.keep_geometry(recognizer.add_geometry(
                        frame, face_stream.update(frame, later_time(time_s, face_stream.time_s))))
                    timeline.append({"frame": index, "time": round(time_s, 4), "faces": [f.to_dict() for f in faces]})
                    rows.write(FaceRow.of(str(path), index, time_s, i, f).to_dict(geometry) for i, f in enumerate(faces))
                    if write_video:
                        if writer is None:
                            writer = TimedWriter(out / "annotated.mp4", fps / stride, frame.shape)
                        writer.write(recognizer.annotate(frame, faces), time_s)
            except KeyboardInterrupt:  # Ctrl-C: the outputs below are written for the frames read
                interrupted = True
        bar.close()
        if writer is not None:
            writer.release()  # a playable mp4 (its index written) even after an interrupt
            writer = None
    finally:
        if writer is not None:  # the rest failed: no partial mp4 left behind
            writer.discard()
    with RowWriter(out / "timeline.jsonl") as records:
        records.write(timeline)
    summary: dict[str, Any] = {"file": str(path), "frames_read": frames.read, "frames_processed": len(timeline),
                               "fps": fps, "tracks": summarize_tracks(timeline_rows(timeline, str(path)), recognizer.classes)}
    write_whole(out / "summary.json", json_text(summary, indent=2))
    plot_timeline(timeline, recognizer.classes, out / "timeline.png")
    if interrupted:
        raise Interrupted(f"{frames.read} frame(s) read, {len(timeline)} processed, outputs for them in {out}")
    return VideoReport(path, out, frames.read, expected or 0, len(timeline), summary, frames.damaged_at_s)


def run_video(args: argparse.Namespace) -> int:
    path = Path(args.file)
    out = check_apart(args.out or path.with_name(path.stem + "-fer"), [], [path], "video")  # before any work
    check_manifest(out, "video")
    recognizer = build_recognizer(args)
    report = analyse_video(recognizer, path, out, args.stride, args.max_frames, write_video=not args.no_video,
                           progress=not args.no_progress,
                           on_folder=lambda folder: write_manifest(folder, "video", recorded_args(args), __version__))
    print(json_text(report.summary, indent=2))
    problems = report.problems(args.max_frames)
    for line in problems:
        warn(line)
    warn(f"{report.read} frame(s) read, {report.processed} processed, {len(report.tracks)} track(s); "
         f"outputs in {report.out}")
    return exit_code(failed=bool(problems), found=bool(report.tracks), args=args)

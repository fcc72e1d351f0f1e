"""``fer-ensemble benchmark``: per-stage milliseconds and fps at 640x480 for 1 and 4 faces
(``--stills``: photos, ``fer_ensemble.apps.stills_benchmark``; what chose its presets is the
checkout's ``tools/stills_study.py``).

Each stage is timed alone (median of ``--repeat`` runs), then the webcam's own loop runs end to
end on a clip of the same frame: capture, detection and classification on their own threads, the
way ``webcam`` runs them.

The same members also run in PyTorch (same architecture and input size) when torch is
installed, so the ONNX Runtime figures come with a peer measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_ensemble.apps import stills_benchmark
from fer_ensemble.apps.common import (
    add_recognizer_arguments,
    bounded,
    build_recognizer,
    detector_options_of,
    median_ms,
)
from fer_ensemble.apps.webcam import FACES_PER_FRAME
from fer_ensemble.constants import MODEL_NAMES
from fer_ensemble.errors import json_text
from fer_ensemble.media.images import read_image
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.runtime.blazeface import BlazeFaceOptions
from fer_ensemble.runtime.detection import HaarOptions, crop_faces
from fer_ensemble.runtime.geometry import GeometryReader


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` without distortion, centred on grey."""
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 60, np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def test_frame(faces: int) -> np.ndarray:
    """A 640x480 frame holding 1 face (the astronaut) or 4 (a 2x2 grid of the sample portraits)."""
    astronaut = read_image(SAMPLES / "astronaut.png")
    hopper = read_image(SAMPLES / "grace_hopper.jpg")
    if faces == 1:
        return fit(astronaut, 640, 480)
    # head-and-shoulders crops, so the four faces keep a webcam-like size (~110-170 px)
    tiles = [fit(astronaut[16:216, 126:326], 320, 240), fit(hopper[50:380, 100:430], 320, 240)]
    return np.vstack([np.hstack(tiles), np.hstack(tiles[::-1])])


def torch_timings(recognizer, crops, repeat: int) -> dict[str, float]:
    try:
        import torch

        from fer_ensemble.models import create_model
    except ImportError:
        return {}
    timings = {}
    for member in recognizer.ensemble.members:
        if member.classifier.name not in MODEL_NAMES:
            continue
        pre = member.classifier.preprocessing
        model = create_model(member.classifier.name, input_size=pre.input_size).eval()
        batch = torch.from_numpy(prepare_batch(crops, pre))
        passes = [batch, batch.flip(-1).contiguous()] if member.flip_tta else [batch]

        def infer(model=model, passes=passes) -> None:
            for inputs in passes:
                model(inputs)

        with torch.inference_mode():
            timings[member.classifier.name] = median_ms(infer, repeat)
    return timings


def measure(recognizer, faces: int, repeat: int, with_torch: bool) -> dict:
    frame = test_frame(faces)
    encoded = cv2.imencode(".jpg", frame)[1]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    boxes = recognizer.detect(frame)
    crops = crop_faces(gray, boxes, recognizer.margin, recognizer.offset)
    row: dict[str, Any] = {
        "faces_requested": faces,
        "faces_found": len(boxes),
        "decode_ms": median_ms(lambda: cv2.imdecode(encoded, cv2.IMREAD_COLOR), repeat),
        "detect_ms": median_ms(lambda: recognizer.detect(frame), repeat),
        "members": {},
    }
    for member in recognizer.ensemble.members:
        pre = member.classifier.preprocessing
        batch = prepare_batch(crops, pre)
        mirrored = np.ascontiguousarray(batch[..., ::-1])

        def infer(member=member, batch=batch, mirrored=mirrored) -> None:
            member.classifier.logits(batch)
            if member.flip_tta:  # the mirrored faces cost a second pass
                member.classifier.logits(mirrored)

        row["members"][member.classifier.name] = {
            "input_size": pre.input_size,
            "variant": member.classifier.variant,
            "flip_tta": member.flip_tta,
            "preprocess_ms": median_ms(lambda pre=pre: prepare_batch(crops, pre), repeat),
            "onnx_ms": median_ms(infer, repeat),
        }
    if with_torch:
        for name, ms in torch_timings(recognizer, crops, repeat).items():
            row["members"][name]["torch_ms"] = ms
    native = recognizer.ensemble.native_probabilities(crops)
    resting = recognizer.ensemble.resting_face(native[:1]) if len(native) else None
    row["answer_ms"] = median_ms(lambda: recognizer.ensemble.answer(native, recognizer.prior_strength), repeat)
    row["answer_resting_face_ms"] = median_ms(
        lambda: recognizer.ensemble.answer(native, recognizer.prior_strength, resting), repeat)
    geometry = GeometryReader(threads=1)  # apps read it on request only (--geometry): not in the sum of the stages
    row["geometry_ms"] = median_ms(lambda: geometry.read(frame, boxes), repeat)
    classify = sum(m["preprocess_ms"] + m["onnx_ms"] for m in row["members"].values())
    row["ensemble_ms_per_face"] = classify / max(1, len(boxes))
    row["total_ms"] = row["decode_ms"] + row["detect_ms"] + classify
    row["fps"] = 1000 / row["total_ms"]
    return row


def measure_pipeline(args: argparse.Namespace, faces: int, frames: int = 300, resting_face: bool = False,
                     budget: int | None = None, auto_resting_face: bool = False, profile: bool = False,
                     geometry: bool = False) -> dict:
    """The webcam's real loop (capture, detector and classifier threads) on a clip of this frame,
    classifying at most ``budget`` faces per frame (None: all); with ``resting_face``, every face
    takes its first frame as its resting face (the ``r`` key); with ``auto_resting_face``, each
    face takes one from its calm frames (``--auto-resting-face``); with ``profile``, every face is
    read through a profile enrolled from the frame and its mirror image (``--profile``; with
    ``geometry`` too, enrolled and read with the faces' blendshapes); with
    ``geometry``, every face shown gets its geometry, as ``webcam --geometry`` does.
    ``relative``: the share of the faces shown that were read against a resting face;
    ``profiled``: read through a profile; ``with_geometry``: given their geometry;
    ``geometry_reads_per_second``: frames whose landmarks were read (``LatestGeometry``)."""
    from fer_ensemble.apps.webcam import DetectorThread, LatestFrame, live_loop

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "frames.avi"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 30, (640, 480))
        frame = test_frame(faces)
        for _ in range(frames):
            writer.write(frame)
        writer.release()
        recognizer = build_recognizer(argparse.Namespace(**{**vars(args), "geometry": geometry}), threads=1)
        enrolled = recognizer.enrol([frame, cv2.flip(frame, 1)], ["happiness", "neutral"]) if profile else None
        stream = recognizer.stream(auto_resting_face=auto_resting_face, profile=enrolled or recognizer.profile)
        shown = {"faces": 0, "relative": 0, "profiled": 0, "geometry": 0}
        source = LatestFrame(cv2.VideoCapture(str(clip)), on_demand=True)
        detector = DetectorThread(recognizer, source)

        def take_once(number: int, frame: np.ndarray, faces: list) -> bool:
            if resting_face and not any(f.relative for f in faces):
                stream.take_resting_face()
            shown["faces"] += len(faces)
            shown["relative"] += sum(f.relative for f in faces)
            shown["profiled"] += sum(f.profiled for f in faces)
            shown["geometry"] += sum(f.pose is not None for f in faces)
            return True

        try:
            stats = live_loop(stream, source, detector, take_once, budget=budget)
        finally:
            detector.stop()
            source.stop()
    return {"fps": stats.fps, "frames": stats.frames, "detections_per_second": stats.detections / stats.seconds,
            "with_geometry": shown["geometry"] / max(shown["faces"], 1),
            "geometry_reads_per_second": stats.geometry_reads / stats.seconds,
            "relative": shown["relative"] / max(shown["faces"], 1),
            "profiled": shown["profiled"] / max(shown["faces"], 1)}


def format_rows(rows: list[dict]) -> str:
    header = "| stage | " + " | ".join(f"{r['faces_found']} face(s)" for r in rows) + " |"
    lines = [header, "|---|" + "---|" * len(rows)]

    def line(name: str, values: list) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    line("decode JPEG (ms)", [f"{r['decode_ms']:.2f}" for r in rows])
    line("detect (ms)", [f"{r['detect_ms']:.2f}" for r in rows])
    for name, member in rows[0]["members"].items():
        how = f"{member['input_size']} px {member['variant']}" + (" + flip" if member["flip_tta"] else "")
        line(f"{name} preprocess (ms)", [f"{r['members'][name]['preprocess_ms']:.2f}" for r in rows])
        line(f"{name} ONNX Runtime, {how} (ms)", [f"{r['members'][name]['onnx_ms']:.2f}" for r in rows])
        if "torch_ms" in rows[0]["members"][name]:
            line(f"{name} PyTorch eager fp32, same input (ms)",
                 [f"{r['members'][name]['torch_ms']:.2f}" for r in rows])
            line(f"{name} PyTorch / ONNX Runtime",
                 [f"{r['members'][name]['torch_ms'] / r['members'][name]['onnx_ms']:.2f}x" for r in rows])
    line("ensemble per face (ms)", [f"{r['ensemble_ms_per_face']:.2f}" for r in rows])
    line("prior on the frame's faces (ms)", [f"{r['answer_ms']:.3f}" for r in rows])
    line("resting face + prior on them (ms)", [f"{r['answer_resting_face_ms']:.3f}" for r in rows])
    line("face geometry on them, on request (--geometry) (ms)", [f"{r['geometry_ms']:.1f}" for r in rows])
    line("sum of the stages (ms)", [f"{r['total_ms']:.2f}" for r in rows])
    line("fps, stages one after another", [f"{r['fps']:.1f}" for r in rows])
    if "pipeline" in rows[0]:
        line(f"**fps, webcam pipeline (measured end to end), at most {FACES_PER_FRAME} faces read per frame**",
             [f"**{r['pipeline']['fps']:.1f}**" for r in rows])
        line("detector passes per second in it", [f"{r['pipeline']['detections_per_second']:.1f}" for r in rows])
        line("fps, webcam pipeline, every face read in every frame", [f"{r['pipeline_every_face']['fps']:.1f}" for r in rows])
        line(f"at most {FACES_PER_FRAME} per frame / every face", [f"{r['pipeline']['fps'] / r['pipeline_every_face']['fps']:.2f}"
                                                  for r in rows])
        line("fps, webcam pipeline, every face with a resting face", [f"{r['pipeline_resting']['fps']:.1f}" for r in rows])
        line("with / without resting faces", [f"{r['pipeline_resting']['fps'] / r['pipeline']['fps']:.3f}" for r in rows])
        if "pipeline_profile" in rows[0]:
            line("fps, webcam pipeline, every face through a profile", [f"{r['pipeline_profile']['fps']:.1f}" for r in rows])
            line("with / without a profile (faces read through it)",
                 [f"{r['pipeline_profile']['fps'] / r['pipeline']['fps']:.3f} ({r['pipeline_profile']['profiled']:.0%})"
                  for r in rows])
        if "pipeline_geometry" in rows[0]:
            line("fps, webcam pipeline, with face geometry (--geometry)", [f"{r['pipeline_geometry']['fps']:.1f}" for r in rows])
            line("with / without face geometry", [f"{r['pipeline_geometry']['fps'] / r['pipeline']['fps']:.3f}" for r in rows])
            line("landmarks read per second (each face shows its latest)",
                 [f"{r['pipeline_geometry']['geometry_reads_per_second']:.1f} "
                  f"({r['pipeline_geometry']['with_geometry']:.0%} of faces shown with geometry)" for r in rows])
        if "pipeline_geometry_profile" in rows[0]:
            line("fps, with face geometry, every face through a profile read with its blendshapes",
                 [f"{r['pipeline_geometry_profile']['fps']:.1f}" for r in rows])
            line("with / without the profile, both with face geometry",
                 [f"{r['pipeline_geometry_profile']['fps'] / r['pipeline_geometry']['fps']:.3f} "
                  f"({r['pipeline_geometry_profile']['profiled']:.0%})" for r in rows])
        line("fps, webcam pipeline, automatic resting faces", [f"{r['pipeline_auto']['fps']:.1f}" for r in rows])
        line("automatic / without resting faces (faces read against one)",
             [f"{r['pipeline_auto']['fps'] / r['pipeline']['fps']:.3f} ({r['pipeline_auto']['relative']:.0%})"
              for r in rows])
    return "\n".join(lines)


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end webcam-loop run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stills", action="store_true",
                        help="photos instead: portraits of several sizes, photos without a face and, with "
                             "--group-photos and --group-labels, your labelled group photos; each detector "
                             "preset on one and two threads")
    parser.add_argument("--group-photos", metavar="DIR", help="--stills: a folder of group photos")
    parser.add_argument("--group-labels", metavar="CSV",
                        help="--stills: their face boxes (file,x,y,w,h rows; the repository's "
                             "benchmarks/group-photo-faces.csv labels ../shared/data/faces)")
    parser.add_argument("--score-thresholds", type=bounded(float, 0.0, 1.0, low_open=True, high_open=True),
                        nargs="+", metavar="T",
                        help="--stills: BlazeFace rows at these score thresholds (default: its own, "
                             f"{BlazeFaceOptions.stills().score_threshold})")
    add_recognizer_arguments(parser)
    return parser


def run_stills(args: argparse.Namespace) -> int:
    rows = stills_benchmark.measure(args)
    if args.json:
        print(json_text({"speed": [row.to_dict() for row in rows]}, indent=2))
    else:
        print(f"photos end to end (decode excluded), {os.cpu_count()} CPU cores, median of {args.repeat} runs")
        print(stills_benchmark.format_rows(rows))
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    if args.stills:
        return run_stills(args)
    recognizer = build_recognizer(args)
    rows = [measure(recognizer, faces, args.repeat, not args.no_torch) for faces in (1, 4)]
    if not args.no_pipeline:
        for row, faces in zip(rows, (1, 4)):  # alternating, so a slow spell of the machine hits each
            row["pipeline"] = measure_pipeline(args, faces, budget=FACES_PER_FRAME)
            row["pipeline_every_face"] = measure_pipeline(args, faces)
            row["pipeline_resting"] = measure_pipeline(args, faces, resting_face=True, budget=FACES_PER_FRAME)
            row["pipeline_auto"] = measure_pipeline(args, faces, budget=FACES_PER_FRAME, auto_resting_face=True)
            if recognizer.ensemble.embedding_size is not None:  # an ensemble exported before embeddings: none
                row["pipeline_profile"] = measure_pipeline(args, faces, budget=FACES_PER_FRAME, profile=True)
            if args.geometry:  # on request: it costs a pipeline run per row
                row["pipeline_geometry"] = measure_pipeline(args, faces, budget=FACES_PER_FRAME, geometry=True)
                if "pipeline_profile" in row:  # the profile enrolled with the frame's blendshapes, read with them
                    row["pipeline_geometry_profile"] = measure_pipeline(args, faces, budget=FACES_PER_FRAME,
                                                                        geometry=True, profile=True)
    if args.json:
        print(json_text(rows, indent=2))
    else:
        options = detector_options_of(args)
        detector = (f"Haar at {options.detect_width} px wide" if isinstance(options, HaarOptions)
                    else f"BlazeFace, faces from {options.min_face} px")
        print(f"640x480 frames, {os.cpu_count()} CPU cores, detector: {detector}, median of {args.repeat} runs")
        print(format_rows(rows))
    return 0

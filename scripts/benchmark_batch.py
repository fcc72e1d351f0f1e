#!/usr/bin/env python3
"""Scaling of ``fer-ensemble batch`` (a benchmark, not a test): frames per second with 1 and 2
workers, on the local process pool and on a local Ray, in one run on the same collection.

The collection, made in a temporary folder: the bundled clip looped to ``--frames`` frames
(640x480, 1-2 faces), and the bundled photos copied ``--photo-copies`` times. Videos are analysed
without tracking, so each spreads over the workers in ranges of ``--chunk-frames``.

    python scripts/benchmark_batch.py [--frames 600] [--photo-copies 10] [--engines local ray]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "fer_ensemble" / "samples"


def make_collection(folder: Path, frames: int, copies: int) -> int:
    """The looped clip and the photo copies; returns the number of frames (photos count one each)."""
    source = cv2.VideoCapture(str(SAMPLES / "faces.mp4"))
    clip = []
    while True:
        ok, frame = source.read()
        if not ok:
            break
        clip.append(frame)
    writer = cv2.VideoWriter(str(folder / "long.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15,
                             (clip[0].shape[1], clip[0].shape[0]))
    for i in range(frames):
        writer.write(clip[i % len(clip)])
    writer.release()
    photos = [p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")]
    for n in range(copies):
        for photo in photos:
            shutil.copy(photo, folder / f"{photo.stem}-{n}{photo.suffix}")
    return frames + copies * len(photos)


def run(collection: Path, out: Path, engine: str, workers: int, chunk: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fer_ensemble.cli", "batch", str(collection), "--out", str(out),
                    "--engine", engine, "--num-workers", str(workers), "--no-track", "--chunk-frames", str(chunk),
                    "--no-progress"], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--photo-copies", type=int, default=10)
    parser.add_argument("--chunk-frames", type=int, default=100)
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fer-batch-bench-") as temp:
        collection = Path(temp) / "collection"
        collection.mkdir()
        frames = make_collection(collection, args.frames, args.photo_copies)
        print(f"{frames} frames: a {args.frames}-frame 640x480 clip in ranges of {args.chunk_frames} and "
              f"{frames - args.frames} photos; wall time of the whole command, start-up included")
        print("| engine | workers | seconds | frames/s | vs 1 worker | faces |")
        print("|---|---|---|---|---|---|")
        for engine in args.engines:
            first = None
            for workers in args.workers:
                out = Path(temp) / f"out-{engine}-{workers}"
                seconds = run(collection, out, engine, workers, args.chunk_frames)
                rate = frames / seconds
                first = first or rate
                faces = sum(pq.read_table(out / "summary.parquet").column("faces").to_pylist())
                print(f"| {engine} | {workers} | {seconds:.1f} | {rate:.1f} | {rate / first:.2f}x | {faces} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

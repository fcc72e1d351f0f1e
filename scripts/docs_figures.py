#!/usr/bin/env python3
"""The pictures of the documentation site, written into docs/assets/ (issue 23): none is drawn by hand.

- ``demo-photo.jpg``, ``demo-video-frame.jpg``, ``timeline.png``: what ``fer-ensemble demo
  --samples`` writes for the bundled samples (the annotated astronaut photo, a frame of the
  annotated clip with two faces in view, the clip's timeline plot), run here into a temporary folder.
- ``confusion-ferplus-test.png``: the shipped ensemble's confusion matrices on FER+ Test, under
  FER+'s prior and under the default prior (0.95), as ``fit-ensemble`` recorded them in
  ``src/fer_ensemble/weights/ensemble.json`` (``scripts/results_table.py`` prints the same numbers).
- ``confusion-ckplus48.png``: CK+48 per sequence, from ``fer-ensemble evaluate --labels ... --crops
  --group-by subject,sequence --json`` (default prior; the accuracy page's 75.8 %).
- ``confusion-taiwan-posed.png``: taiwan-posed, every photo end to end through the default detector,
  from ``fer-ensemble evaluate --labels ... --json`` (the accuracy page's 49.4 %).
- ``enrolment-webcam.jpg``: the webcam's guided enrolment (``fer-ensemble webcam --enrol``) in three
  moments, a prompt's countdown, a refused capture and the self-check at the end, drawn by the
  webcam's own per-frame code (``FaceStream.update``, its ``Enroller``, ``annotate``) on a clip of
  the bundled Grace Hopper photo moved a little for each expression (this machine's OpenCV has no
  window to take a snapshot from; ``tests/test_enrolment.py`` walks the command itself through a clip).
- ``enrolment-page.jpg``: the same enrolment on the web page (``fer-ensemble serve``, the shipped
  ensemble) in Chromium with a fake webcam playing the Grace Hopper photo, moved a little every half
  second: a prompt, then the page once the profile is made (its download link and self-check).
  Needs Chromium (``/usr/bin/chromium``) and Playwright (the ``dev`` extra).
- ``geometry.jpg``: face geometry (``predict --geometry``) on the bundled astronaut photo: the
  landmarks' contours as ``annotate`` draws them, and bars of the face's twelve strongest blendshapes.
- ``peers.png``: a byte-identical copy of ``benchmarks/peers/results/peers.png``, the accuracy-vs-speed
  plot that ``bash benchmarks/peers/run.sh`` draws (its peers need their own runtimes, so it is not
  re-run here).

Needs the ``train`` extra (matplotlib) and the check sets at ``../shared/data`` (``--ckplus48``,
``--taiwan``). About 40 s on the 2-core machine. The same inputs give the same pictures.

    python scripts/docs_figures.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.constants import EMOTIONS

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "docs" / "assets"
SHARED = REPO.parent / "shared" / "data"
ENSEMBLE = REPO / "src" / "fer_ensemble" / "weights" / "ensemble.json"
PEERS_PLOT = REPO / "benchmarks" / "peers" / "results" / "peers.png"
PNG_METADATA = {"Software": None}  # no matplotlib version in the file: same inputs, same bytes
JPEG_QUALITY = 85


def cli(*args: str) -> str:
    """``fer-ensemble ARGS`` in this interpreter; its stdout."""
    code = "import sys; from fer_ensemble.cli import main; raise SystemExit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"fer-ensemble {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def write_jpeg(image: np.ndarray, path: Path, width: int) -> None:
    if image.shape[1] > width:
        image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])),
                           interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise SystemExit(f"could not write {path}")


def late_frame(video: Path) -> np.ndarray:
    """A frame of the clip's last part, where two faces are in view (tracks 3 and 4 of the timeline)."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.set(cv2.CAP_PROP_POS_FRAMES, count * 5 // 6)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"could not read a frame of {video}")
    return frame


def demo_pictures(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cli("demo", "--samples", "--out", tmp)
        demo = Path(tmp)
        write_jpeg(cv2.imread(str(demo / "images" / "astronaut.png")), out / "demo-photo.jpg", 512)
        write_jpeg(late_frame(demo / "video" / "annotated.mp4"), out / "demo-video-frame.jpg", 640)
        shutil.copyfile(demo / "video" / "timeline.png", out / "timeline.png")


def enrolment_pictures(out: Path) -> None:
    from fer_ensemble.apps.webcam import Enroller
    from fer_ensemble.runtime.drawing import draw_status
    from fer_ensemble.runtime.enrolment import EnrolmentOptions
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    photo = cv2.imread(str(REPO / "src" / "fer_ensemble" / "samples" / "grace_hopper.jpg"))
    photo = cv2.resize(photo, (480, round(photo.shape[0] * 480 / photo.shape[1])), interpolation=cv2.INTER_AREA)
    recognizer = EmotionRecognizer()
    stream = recognizer.stream()
    options = EnrolmentOptions(captures=2)
    enroller = Enroller(recognizer, options, None)
    enroller.start()
    fps, per_expression = 10, 5.0
    wanted: dict[str, np.ndarray] = {}
    for index in range(int(fps * (per_expression * len(options.classes) + 3))):
        time_s = index / fps
        step, within = divmod(time_s, per_expression)
        shift = int(step) * 3 + (2 if within >= 4.0 else 0)  # each expression, and its second capture, moves a little
        frame = np.roll(photo, (shift, shift), axis=(0, 1))
        faces = stream.update(frame, time_s)
        state = enroller.frame(stream, frame, time_s)
        canvas = recognizer.annotate(frame, faces)
        enroller.draw(canvas, state, time_s)
        draw_status(canvas, "30 fps  1 face(s)  smoothing on")
        moment = ("countdown" if state and state.phase == "countdown" and state.step == 5 and state.remaining_s < 2
                  else "refused" if state and state.refused and state.step == 5
                  else "self-check" if state is None and enroller.finished and time_s > enroller.summary_until - 7
                  else None)
        if moment and moment not in wanted:
            wanted[moment] = canvas
    if sorted(wanted) != ["countdown", "refused", "self-check"]:
        raise SystemExit(f"the enrolment clip did not reach every moment: {sorted(wanted)}")
    row = np.concatenate([wanted[m] for m in ("countdown", "refused", "self-check")], axis=1)
    write_jpeg(row, out / "enrolment-webcam.jpg", 900)


def enrolment_page(out: Path) -> None:
    import os
    import socket
    import time
    import urllib.request

    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    photo = fit(cv2.imread(str(REPO / "src" / "fer_ensemble" / "samples" / "grace_hopper.jpg")), 640, 480)
    with tempfile.TemporaryDirectory() as tmp:
        camera = Path(tmp) / "camera.y4m"
        with open(camera, "wb") as f:  # 15 fps, the photo moved 2 pixels every 8 frames
            f.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
            for i in range(10):
                frame = cv2.cvtColor(np.roll(photo, (2 * i, 2 * i), axis=(0, 1)), cv2.COLOR_BGR2YUV_I420).tobytes()
                f.write((b"FRAME\n" + frame) * 8)
        server = subprocess.Popen([sys.executable, "-m", "fer_ensemble.cli", "serve", "--port", str(port)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("fer-ensemble serve did not start") from None
                    time.sleep(0.2)
            shots = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"])
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(f"http://127.0.0.1:{port}/?enrol_captures=1&enrol_countdown_s=1")
                page.wait_for_selector("#status[data-kind=live]", timeout=30_000)
                page.click("#enrol")
                page.wait_for_function("document.getElementById('enrol-status').innerText.startsWith('4/7 show sadness in')",
                                       timeout=60_000)
                shots.append(page.screenshot(clip={"x": 0, "y": 0, "width": 680, "height": 700}))
                page.wait_for_selector("#enrol-status[data-phase=done]", timeout=60_000)
                page.wait_for_timeout(500)
                shots.append(page.screenshot(clip={"x": 0, "y": 0, "width": 680, "height": 700}))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    images = [cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR) for shot in shots]
    write_jpeg(np.concatenate(images, axis=1), out / "enrolment-page.jpg", 900)


def geometry_picture(out: Path) -> None:
    """The astronaut's face with its contours and a panel of its twelve strongest blendshapes."""
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer(geometry=True)
    photo = cv2.imread(str(REPO / "src" / "fer_ensemble" / "samples" / "astronaut.png"))
    [face] = recognizer.predict(photo)
    drawn = recognizer.annotate(photo, [face], bars=False)
    x, y, w, h = face.box
    side = int(1.7 * max(w, h))
    left, top = max(0, x + w // 2 - side // 2), max(0, y + h // 2 - side // 2)
    crop = cv2.resize(drawn[top:top + side, left:left + side], (360, 360), interpolation=cv2.INTER_CUBIC)
    panel = np.full((360, 300, 3), 255, np.uint8)
    strongest = sorted(face.blendshapes.items(), key=lambda item: -item[1])[:12]
    cv2.putText(panel, "strongest blendshapes", (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, value) in enumerate(strongest):
        top_y = 40 + i * 26
        length = max(1, round(80 * value))
        cv2.rectangle(panel, (170, top_y), (170 + length, top_y + 16), (180, 119, 31), -1)
        for text, left in ((name, 8), (f"{value:.2f}", 175 + length)):
            cv2.putText(panel, text, (left, top_y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    write_jpeg(np.concatenate([crop, panel], axis=1), out / "geometry.jpg", 600)


def draw_confusion(ax, matrix: np.ndarray, title: str) -> None:
    """Rows: the true classes present (row-normalised share and count); columns: all eight predicted."""
    rows = [i for i in range(len(EMOTIONS)) if matrix[i].sum() > 0]
    counts = matrix[rows]
    shares = counts / counts.sum(axis=1, keepdims=True)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for r in range(len(rows)):
        for c in range(len(EMOTIONS)):
            ax.text(c, r, f"{shares[r, c]:.2f}\n{counts[r, c]}", ha="center", va="center", fontsize=6.5,
                    color="white" if shares[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [EMOTIONS[i] for i in rows], fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)


def confusion_figure(panels: list[tuple[list, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    for ax, (matrix, title) in zip(axes[0], panels):
        draw_confusion(ax, np.asarray(matrix), title)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata=PNG_METADATA)
    plt.close(fig)


def ferplus_confusions(out: Path) -> None:
    metrics = json.loads(ENSEMBLE.read_text())["metrics"]
    default = metrics["ensemble_default_prior"]
    confusion_figure([
        (metrics["ensemble"]["test"]["confusion"], "FER+ Test, prior ferplus (accuracy "
         f"{100 * metrics['ensemble']['test']['accuracy']:.2f} %)"),
        (default["test"]["confusion"], f"FER+ Test, default prior {default['strength']:g} (accuracy "
         f"{100 * default['test']['accuracy']:.2f} %)"),
    ], out / "confusion-ferplus-test.png")


def check_set_confusions(out: Path, ckplus48: Path, taiwan: Path) -> None:
    for folder in (ckplus48, taiwan):
        if not (folder / "labels.csv").is_file():
            raise SystemExit(f"no labels.csv in {folder}: give the check set's folder (--ckplus48, --taiwan)")
    ck = json.loads(cli("evaluate", "--labels", str(ckplus48 / "labels.csv"), "--images", str(ckplus48 / "images"),
                        "--crops", "--group-by", "subject,sequence", "--groups", str(ckplus48 / "sequences.csv"),
                        "--json"))["per_group"]
    confusion_figure([(ck["confusion"], f"CK+48, {ck['n']} sequences, default prior (accuracy "
                                        f"{100 * ck['accuracy']:.2f} %)")], out / "confusion-ckplus48.png")
    tw = json.loads(cli("evaluate", "--labels", str(taiwan / "labels.csv"), "--images", str(taiwan / "images"),
                        "--json"))["per_image"]
    confusion_figure([(tw["confusion"], f"taiwan-posed, {tw['n']} photos end to end (accuracy "
                                        f"{100 * tw['accuracy']:.2f} %; no face: {tw['no_face']})")],
                     out / "confusion-taiwan-posed.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder for the pictures (default: docs/assets)")
    parser.add_argument("--ckplus48", type=Path, default=SHARED / "ckplus48")
    parser.add_argument("--taiwan", type=Path, default=SHARED / "taiwan-posed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    demo_pictures(args.out)
    enrolment_pictures(args.out)
    enrolment_page(args.out)
    geometry_picture(args.out)
    ferplus_confusions(args.out)
    check_set_confusions(args.out, args.ckplus48, args.taiwan)
    shutil.copyfile(PEERS_PLOT, args.out / "peers.png")
    for path in sorted(args.out.iterdir()):
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}  {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

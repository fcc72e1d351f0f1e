"""What a new user can get wrong, and what must never happen to their files: each test here
reproduces a failure seen from a fresh clone (issue "Robustness")."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import (
    NO_FACE,
    REPO,
    TINY_TRAIN,
    cli_in_process,
    ferplus_dir,
    heic_photo,
    huge_png,
    need,
    run_cli,
    run_tool,
    tiny_member,
)

from fer_ensemble.errors import ExitCode, InputError
from fer_ensemble.media.inputs import SAMPLES

PHOTO = SAMPLES / "grace_hopper.jpg"
CLIP = SAMPLES / "faces.mp4"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- data loss and broken paths -------------------------------------------------------------

def test_predict_never_writes_over_an_input(tiny_ensemble: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTO, photos / "gh.jpg")
    original = (photos / "gh.jpg").read_bytes()
    tiny = ("--ensemble", str(tiny_ensemble))

    same = cli_in_process("predict", str(photos), "--out", str(photos), *tiny)
    assert same.returncode == 2 and "is an input folder" in same.stderr
    inside = photos / "annotated"
    for _ in range(2):  # the second run must not read the first run's outputs
        result = run_cli("predict", str(photos), "--out", str(inside), *tiny)
        assert len(lines(result.stdout)) == 1
    assert sorted(p.name for p in inside.iterdir()) == ["fer-ensemble.json", "gh.jpg"]
    for named in (str(photos / "gh.jpg"), str(photos / "*.jpg")):  # the file itself, or a glob there
        refused = cli_in_process("predict", named, "--out", str(photos), *tiny)
        assert refused.returncode == 2 and "holds input photos" in refused.stderr, refused.stderr
    assert (photos / "gh.jpg").read_bytes() == original and sorted(p.name for p in photos.iterdir()) == [
        "annotated", "gh.jpg"]
    result = run_cli("predict", str(photos / "gh.jpg"), "--csv", str(tmp_path / "new" / "faces.csv"), *tiny)
    assert (tmp_path / "new" / "faces.csv").is_file() and "Traceback" not in result.stderr  # the folder made


def test_an_output_folder_says_what_made_it_and_never_replaces_a_file_of_that_name(tiny_ensemble: Path,
                                                                                   tmp_path: Path) -> None:
    """Issue 34, item 4 (one output-folder module): predict's, video's and evaluate's folders hold
    fer-ensemble.json, the command and settings that made them; a user's file of that name there is
    refused before any work, not replaced."""
    from fer_ensemble import __version__

    out = tmp_path / "annotated"
    run_cli("predict", str(PHOTO), "--out", str(out), "--margin", "0.3", "--ensemble", str(tiny_ensemble))
    manifest = json.loads((out / "fer-ensemble.json").read_text())
    assert manifest["command"] == "predict" and manifest["version"] == __version__
    assert manifest["settings"]["margin"] == 0.3 and manifest["settings"]["paths"] == [str(PHOTO)]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fer-ensemble.json").write_text("my notes")
    refused("predict", str(PHOTO), "--out", str(mine), "--ensemble", str(tiny_ensemble),
            says=f"{mine / 'fer-ensemble.json'} exists and is not a manifest of ours")
    refused("video", str(CLIP), "--out", str(mine), "--stride", "50", "--ensemble", str(tiny_ensemble),
            says="is not a manifest of ours")
    assert sorted(p.name for p in mine.iterdir()) == ["fer-ensemble.json"]
    assert (mine / "fer-ensemble.json").read_text() == "my notes"
    clip = tmp_path / "clip"
    run_cli("video", str(CLIP), "--out", str(clip), "--stride", "50", "--no-video", "--no-progress",
            "--ensemble", str(tiny_ensemble))
    assert json.loads((clip / "fer-ensemble.json").read_text())["command"] == "video"
    refused("predict", str(PHOTO), "--out", str(clip), "--ensemble", str(tiny_ensemble),
            says=f"{clip} holds the outputs of fer-ensemble video; give predict a folder of its own")
    fresh = tmp_path / "fresh"  # no manifest yet: the CSV would have replaced the one written next
    refused("predict", str(PHOTO), "--out", str(fresh), "--csv", str(fresh / "fer-ensemble.json"),
            "--ensemble", str(tiny_ensemble), says="that name holds the --out folder's manifest")


def sample_copies(folder: Path, names: dict[str, str]) -> dict[Path, bytes]:
    """Copies of bundled samples (``{copy name: sample name}``) in ``folder`` (made), with other
    files given as ``"text:CONTENT"``; each file's bytes, to compare after a command ran."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sample in names.items():
        target = folder / name
        if sample.startswith("text:"):
            target.write_text(sample.removeprefix("text:"))
        else:
            shutil.copy(SAMPLES / sample, target)
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_untouched(files: dict[Path, bytes]) -> None:
    """Every file of ``sample_copies`` byte for byte as it was, and nothing added beside them."""
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} was changed"
    folders = {p.parent for p in files}
    assert {p for folder in folders for p in folder.iterdir()} == set(files), "outputs among the inputs"


def refused(*command: str, says: str) -> None:
    """``fer-ensemble COMMAND`` exits 2 with one line on stderr that contains ``says`` (run in-process:
    a refusal before any work)."""
    result = cli_in_process(*command)
    assert result.returncode == 2 and lines(result.stderr) == [result.stderr.strip()], result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_predict_csv_never_replaces_an_input_or_a_file_it_did_not_write(tiny_ensemble: Path,
                                                                         tmp_path: Path) -> None:
    """Issue "Robustness", item 1: --csv naming an input photo truncated it (then reported it as an
    empty file); naming another photo turned it into CSV text, exit 0."""
    ph = tmp_path / "ph"
    files = sample_copies(ph, {"astronaut.png": "astronaut.png", "camera.png": "camera.png",
                               "grace_hopper.jpg": "grace_hopper.jpg"})
    files |= sample_copies(tmp_path / "mine", {"notes.txt": "text:my notes",
                                               "labels.csv": "text:file,label\n"})
    tiny = ("--ensemble", str(tiny_ensemble))
    refused("predict", str(ph), "--csv", str(ph / "astronaut.png"), *tiny, says="is an input")
    refused("predict", str(ph / "camera.png"), "--csv", str(ph / "grace_hopper.jpg"), *tiny,
            says="is not an earlier output of this command")
    for mine in ("notes.txt", "labels.csv"):  # a user's file, whatever its suffix
        refused("predict", str(ph / "camera.png"), "--csv", str(tmp_path / "mine" / mine), *tiny,
                says="is not an earlier output of this command")
    assert_untouched(files)

    faces = tmp_path / "faces.csv"
    for _ in range(2):  # a new file, then the earlier output of predict --csv: replaced
        run_cli("predict", str(ph / "camera.png"), "--csv", str(faces), *tiny)
        assert faces.read_text().startswith("file,face,") and len(faces.read_text().splitlines()) == 2
    (tmp_path / "empty.csv").touch()  # an empty file (mktemp's): nothing to lose
    run_cli("predict", str(ph / "camera.png"), "--csv", str(tmp_path / "empty.csv"), *tiny)
    annotated = tmp_path / "annotated"  # the CSV and an annotated copy of one name: the copy moves aside
    run_cli("predict", str(ph / "camera.png"), "--out", str(annotated), "--csv", str(annotated / "camera.png"), *tiny)
    assert sorted(p.name for p in annotated.iterdir()) == ["camera.png", "camera_2.png", "fer-ensemble.json"]
    assert (annotated / "camera.png").read_text().startswith("file,face,")


def test_video_never_writes_among_or_over_its_input(tiny_ensemble: Path, tmp_path: Path) -> None:
    """Issue "Robustness", item 2: video --out the video's own folder overwrote the input while reading
    it (a video named annotated.mp4: gone) and replaced a user's summary.json."""
    vin = tmp_path / "vin"
    files = sample_copies(vin, {"clip.mp4": "faces.mp4", "annotated.mp4": "faces.mp4",
                                "summary.json": 'text:{"mine": 1}'})
    fast = ("--stride", "50", "--no-progress", "--ensemble", str(tiny_ensemble))
    refused("video", str(vin / "annotated.mp4"), "--out", str(vin), *fast,
            says=f"--out {vin} holds input video")
    refused("video", str(vin / "clip.mp4"), "--out", f"{vin}/", "--no-video", *fast, says="holds input video")
    assert_untouched(files)


def test_batch_never_writes_among_its_inputs(tiny_ensemble: Path, tmp_path: Path) -> None:
    """Issue "Robustness", item 2: batch --out the photos' folder wrote among them and replaced a
    user's summary.parquet; --out the input folder itself said "no photo or video there"."""
    need("pyarrow")
    bin_ = tmp_path / "bin"
    files = sample_copies(bin_, {"a.png": "astronaut.png", "summary.parquet": "text:not ours",
                                 "list.csv": f"text:path\n{SAMPLES / 'camera.png'}\n"})  # a manifest
    local = ("--engine", "local", "--no-progress", "--ensemble", str(tiny_ensemble))
    refused("batch", str(bin_ / "a.png"), "--out", str(bin_), *local, says=f"--out {bin_} holds input photos")
    refused("batch", str(bin_), "--out", str(bin_), *local, says=f"--out {bin_} is an input folder")
    refused("batch", str(bin_ / "list.csv"), "--out", str(bin_), *local, says="holds input photos")
    refused("batch", str(bin_ / "a.png"), "--out", "/proc/x", *local, says="--out /proc/x: cannot make")  # item 14
    assert_untouched(files)


def test_evaluate_never_writes_among_its_labelled_photos(tiny_ensemble: Path, tmp_path: Path) -> None:
    """Issue "Robustness", item 2 (the same rule everywhere): evaluate --out the labelled photos'
    folder wrote its report and confusion matrices among the photos."""
    photos = tmp_path / "labelled"
    files = sample_copies(photos, {"a.png": "astronaut.png", "labels.csv": "text:file,label\na.png,happiness\n"})
    refused("evaluate", str(tiny_ensemble), "--labels", str(photos / "labels.csv"), "--out", str(photos),
            says=f"--out {photos} is an input folder")
    elsewhere = tmp_path / "images"
    shutil.copytree(photos, elsewhere)
    refused("evaluate", str(tiny_ensemble), "--labels", str(photos / "labels.csv"), "--images", str(elsewhere),
            "--out", str(photos), says="holds input labelled photos")
    assert_untouched(files)


def test_fit_ensemble_never_rewrites_the_cards_it_reads(tmp_path: Path) -> None:
    """Issue "Robustness", item 3: fit-ensemble --out the cards' folder rewrote the source card (only
    the chosen variant left in it) and orphaned the other variant's ONNX file. Refused before FER+ is
    read, so with or without the data the cards keep their bytes."""
    cards = tmp_path / "cards"
    cards.mkdir()
    card = tiny_member(cards, "tiny")
    shutil.copy(cards / "tiny.onnx", cards / "tiny-int8.onnx")
    both = {"fp32": "tiny.onnx", "int8": "tiny-int8.onnx"}  # the variant not chosen would be orphaned
    card.write_text(json.dumps({**json.loads(card.read_text()), "files": both}))
    files = {p: p.read_bytes() for p in cards.iterdir()}
    refused("fit-ensemble", str(card), "--data", str(ferplus_dir()), "--out", str(cards), "--variant", "int8",
            "--flip", "off", "--max-ms-per-face", "0", says=f"--out {cards} holds input model cards")
    assert_untouched(files)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a folder no one can make folders in")
def test_an_output_path_that_cannot_be_used_is_one_line_and_exit_2(tiny_ensemble: Path,
                                                                    tmp_path: Path) -> None:
    """Issue "Robustness", item 14: --out /proc/x was the raw errno and exit 1; a --csv or --out under
    a file said "File exists" (or the errno) where a folder is needed."""
    (tmp_path / "notes.txt").write_text("my notes")
    tiny = ("--ensemble", str(tiny_ensemble))
    refused("predict", str(PHOTO), "--out", "/proc/x", *tiny, says="--out /proc/x: cannot make this folder")
    refused("predict", str(PHOTO), "--csv", "/proc/x/f.csv", *tiny,
            says="--csv /proc/x/f.csv: cannot make its folder")
    under = tmp_path / "notes.txt"
    refused("predict", str(PHOTO), "--csv", str(under / "f.csv"), *tiny,
            says=f"{under} is a file, not a folder")
    refused("predict", str(PHOTO), "--out", str(under / "x"), *tiny, says=f"{under} is a file, not a folder")
    refused("video", str(CLIP), "--out", "/proc/x", "--stride", "50", "--no-progress", *tiny,
            says="--out /proc/x: cannot make this folder")
    refused("fit-ensemble", str(tmp_path / "nope.json"), "--data", str(tmp_path), "--out", "/proc/x",
            says="--out /proc/x: cannot make this folder")  # before the fit, not after it
    packing = run_tool("pack_data", "--data", str(tmp_path), "--out", str(under / "t.npz.xz"), check=False)
    assert packing.returncode == 2 and lines(packing.stderr) == [
        f"tools.pack_data: --out {under / 't.npz.xz'}: {under} is a file, not a folder; give a file in a folder"]
    refused("pack-data", "--data", str(tmp_path), "--out", "x.npz.xz",  # issue 34: developer tooling left the package
            says=f"from a checkout of the repository run: python -m tools.pack_data --data {tmp_path} --out x.npz.xz")
    need("torch")
    refused("train", "--model", "mobilenet_v2", "--data", str(tmp_path), "--out", "/proc/x", says="--out /proc/x: cannot make this folder")
    refused("train", "--data", str(tmp_path), "--out", str(under / "run"), "--resume",
            says=f"{under} is a file, not a folder")
    refused("export", str(tmp_path), "--out", "/proc/x", says="--out /proc/x: cannot make this folder")
    refused("export", str(tmp_path), "--out", str(tmp_path), says="is an input folder")
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_predict_writes_any_readable_input_and_says_what_it_skipped(tiny_ensemble: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jfif", "a.jpg", "noext", "b.png"):
        cv2.imwrite(str(tmp_path / "x.jpg"), cv2.imread(str(PHOTO)))
        shutil.copy(tmp_path / "x.jpg", folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "layers.psd").write_bytes(b"\0" * 64)
    out = tmp_path / "out"
    files = [str(folder / n) for n in ("a.jfif", "a.jpg", "noext", "b.png")]
    result = run_cli("predict", *files, "--out", str(out), "--ensemble", str(tiny_ensemble), "--json")
    records = [json.loads(line) for line in lines(result.stdout)]
    assert [(Path(r["file"]).name, Path(r["annotated"]).name) for r in records] == [  # issue 22, item 16
        ("a.jfif", "a.jfif.jpg"), ("a.jpg", "a.jpg"), ("noext", "noext.png"), ("b.png", "b.png")]
    assert sorted(p.name for p in out.iterdir()) == ["a.jfif.jpg", "a.jpg", "b.png", "fer-ensemble.json", "noext.png"]
    assert all(cv2.imread(str(p)) is not None for p in out.iterdir() if p.suffix != ".json")

    scan = run_cli("predict", str(folder), "--ensemble", str(tiny_ensemble))
    assert "a.jfif: 1 face" in scan.stdout  # .jfif is a JPEG: scanned
    assert "a.jpg: 1 face" in scan.stdout and "skipped 3 file(s)" in scan.stderr
    assert all(kind in scan.stderr for kind in (".psd 1", ".txt 1", "(no extension) 1"))


def test_json_lists_every_input_once_failures_included(tiny_ensemble: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs = [str(PHOTO), str(tmp_path / "bad.png"), str(tmp_path / "missing.png"), str(NO_FACE)]
    result = run_cli("predict", *inputs, "--json", "--ensemble", str(tiny_ensemble), check=False)
    records = {r["file"]: r for r in map(json.loads, lines(result.stdout))}
    assert sorted(records) == sorted(inputs) and len(lines(result.stdout)) == 4
    assert "not a readable image" in records[inputs[1]]["error"]
    assert "no such file" in records[inputs[2]]["error"]
    assert records[inputs[3]]["faces"] == [] and len(records[inputs[0]]["faces"]) == 1
    assert result.returncode == 1


# --- exit codes: 0 ok, 1 an input failed, 2 usage, 3 no face anywhere -------------------------

def blank_clip(path: Path, frames: int = 8) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for _ in range(frames):
        writer.write(np.full((64, 96, 3), 128, np.uint8))
    writer.release()
    return path


def test_exit_code_table(tiny_ensemble: Path, tmp_path: Path) -> None:
    tiny = ("--ensemble", str(tiny_ensemble))
    (tmp_path / "bad.png").write_bytes(b"nope")
    clip = blank_clip(tmp_path / "blank.mp4")
    cases = [
        (0, ["predict", str(PHOTO), str(NO_FACE)]),  # faces in one of them is enough
        (3, ["predict", str(NO_FACE)]),
        (0, ["predict", str(NO_FACE), "--allow-empty"]),
        (1, ["predict", str(PHOTO), str(tmp_path / "bad.png")]),
        (1, ["predict", str(NO_FACE), str(tmp_path / "missing.png")]),  # a failure outranks "no face"
        (2, ["predict", str(PHOTO), "--threads", "-1"]),
        (0, ["video", str(CLIP), "--out", str(tmp_path / "v1"), "--no-video", "--max-frames", "4"]),
        (3, ["video", str(clip), "--out", str(tmp_path / "v2"), "--no-video"]),
        (0, ["video", str(clip), "--out", str(tmp_path / "v3"), "--no-video", "--allow-empty"]),
        (1, ["video", str(tmp_path / "bad.png")]),
        (1, ["webcam", "--camera", "97", "--no-window"]),
        (3, ["webcam", "--source", str(clip), "--no-window", "--unpaced"]),
    ]
    for expected, command in cases:
        result = run_cli(*command, *tiny, check=False)
        assert result.returncode == expected, (command, result.stderr)
        assert "Traceback" not in result.stderr


# --- a user's mistakes: one line, the right exit code, no traceback ---------------------------

def bad_ensembles(folder: Path, tiny_ensemble: Path) -> list[Path]:
    files = {"empty.json": "{}", "no-members.json": '{"members": []}', "list.json": "[1, 2]",
             "missing-card.json": '{"members": [{"card": "nope.json"}]}',
             "bad-card.json": '{"members": [{"card": "README.md"}]}',
             "future.json": '{"format": "fer-ensemble/ensemble/v9", "members": [{"card": "small.json"}]}',
             "zero-weights.json": '{"members": [{"card": "small.json", "weight": 0}, {"card": "large.json", "weight": 0}]}'}
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "README.md").write_text("# not a card")
    broken = tiny_ensemble.parent / "broken.json"
    card = json.loads((tiny_ensemble.parent / "small.json").read_text())
    (tiny_ensemble.parent / "garbage.onnx").write_bytes(b"not onnx")
    broken.write_text(json.dumps({**card, "files": {"fp32": "garbage.onnx"}}))
    (folder / "bad-onnx.json").write_text(json.dumps({"members": [{"card": str(broken)}]}))
    future_card = tiny_ensemble.parent / "future-card.json"
    future_card.write_text(json.dumps({**card, "format": "fer-ensemble/model-card/v9"}))
    (folder / "future-member.json").write_text(json.dumps({"members": [{"card": str(future_card)}]}))
    return [REPO / "README.md", *(folder / name for name in [*files, "bad-onnx.json", "future-member.json"])]


def test_broken_ensemble_files_are_one_line(tiny_ensemble: Path, tmp_path: Path) -> None:
    for path in bad_ensembles(tmp_path, tiny_ensemble):
        result = cli_in_process("predict", str(PHOTO), "--ensemble", str(path))
        assert result.returncode == 2, (path.name, result.stderr)
        assert len(lines(result.stderr)) == 1 and "Traceback" not in result.stderr, result.stderr
        if path.name.startswith("future"):  # a format this version does not read is named as such
            assert "/v9'" in result.stderr and "does not read" in result.stderr, result.stderr
        if path.name == "zero-weights.json":  # robustness issue, item 9: it answered NaN for every face
            assert "the members' weights sum to 0; at least one member needs a weight above 0" in result.stderr


@pytest.mark.parametrize("command", [
    ["predict", str(PHOTO), "--out", str(REPO / "README.md")],
    ["predict", str(PHOTO), "--csv", str(REPO)],
    ["video", str(CLIP), "--out", str(REPO / "README.md")],
    ["video", str(CLIP), "--max-frames", "0"],
    ["video", str(CLIP), "--stride", "0"],
    ["video", str(CLIP), "--smoothing", "0"],
    ["video", str(CLIP), "--ema-weight", "abc"],
    ["video"],
    ["nonsense"],
    ["evaluate", "--labels", "x.csv", "--calm-photos", "0"],
    ["webcam", "--max-frames", "0"],
    ["webcam", "--camera", "-1"],
    ["evaluate", "--labels", "x.csv", "--data", "y"],
    ["train", "--out", "nowhere", "--data", "nowhere"],
    ["export", "nowhere", "--out", "nowhere"],
    ["evaluate", "--labels", "x.csv", "--out", str(REPO / "README.md")],
    ["batch", str(PHOTO), "--out", str(REPO / "README.md")],
    ["predict", str(PHOTO), "--bogus"],
])
def test_usage_errors_are_one_line(command: list[str]) -> None:
    result = cli_in_process(*command)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines(result.stderr)) == 1 and result.stderr.startswith("fer-ensemble"), result.stderr
    if "--out" in command and command[0] in ("evaluate", "batch"):  # checked before any work, as elsewhere
        assert result.stderr.strip().endswith("is a file; give a folder for the outputs"), result.stderr


def test_an_unknown_option_points_at_the_help_of_its_command() -> None:
    result = cli_in_process("predict", str(PHOTO), "--bogus")
    assert lines(result.stderr) == ["fer-ensemble predict: unrecognized arguments: --bogus; see fer-ensemble "
                                    "predict --help"]
    assert lines(cli_in_process("--bogus").stderr) == [  # not "required: COMMAND", which hid it
        "fer-ensemble: unrecognized arguments: --bogus (a command comes first); see fer-ensemble --help"]


MISSING = "/nonexistent/ensemble.json"


@pytest.mark.parametrize("command", [
    ["predict", str(PHOTO), "--ensemble", MISSING],
    ["video", str(CLIP), "--ensemble", MISSING],
    ["webcam", "--source", str(CLIP), "--no-window", "--ensemble", MISSING],
    ["benchmark", "--ensemble", MISSING],
    ["serve", "--ensemble", MISSING],
    ["batch", str(PHOTO), "--out", "nowhere", "--ensemble", MISSING],
    ["evaluate", MISSING, "--labels", "x.csv"],
    ["adapt", "--labels", "x.csv", "--out", "nowhere", "--ensemble", MISSING],
])
def test_a_missing_model_file_is_the_same_line_and_code_from_every_command(command: list[str]) -> None:
    # serve sets a process setting (Starlette's spool size) before it loads the ensemble: its own process
    result = run_cli(*command, check=False) if command[0] == "serve" else cli_in_process(*command)
    assert result.returncode == 2, result.stderr
    assert lines(result.stderr) == [f"fer-ensemble {command[0]}: no ensemble file at {MISSING}"], result.stderr


def test_the_light_install_names_the_missing_extra(tmp_path: Path) -> None:
    """Without torch (the base install), the torch commands say which extra to install; so does
    serve without the server extra."""
    (tmp_path / "best.pt").write_bytes(b"")  # a run folder's weights file (read with torch)
    commands = [["train", "--model", "resnet50", "--data", str(tmp_path), "--out", str(tmp_path / "r")],
                ["export", str(tmp_path), "--out", str(tmp_path / "e")],
                ["evaluate", str(tmp_path), "--data", str(tmp_path)],
                ["benchmark-train"]]
    for command in commands:
        code = ("import sys; sys.modules['torch'] = None; from fer_ensemble.cli import main; "
                f"raise SystemExit(main({command!r}))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                timeout=120)
        assert result.returncode == 2, (command, result.stderr)
        assert "pip install 'fer-ensemble[train]'" in result.stderr and "Traceback" not in result.stderr
    for engine in ("local", "ray"):  # named before any output folder is made (issue 22, item 19)
        code = ("import sys; sys.modules['pyarrow'] = sys.modules['pyarrow.parquet'] = None; "
                "from fer_ensemble.cli import main; "
                f"raise SystemExit(main(['batch', {str(PHOTO)!r}, '--out', {str(tmp_path / engine)!r}, "
                f"'--engine', {engine!r}]))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                timeout=120)
        assert result.returncode == 2 and "pip install 'fer-ensemble[batch]'" in result.stderr, result.stderr
        assert not (tmp_path / engine).exists()
    for blocked in ("fastapi", "uvicorn", "fastapi_offline"):
        code = (f"import sys; sys.modules[{blocked!r}] = None; from fer_ensemble.cli import main; "
                "raise SystemExit(main(['serve']))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                timeout=120)
        assert result.returncode == 2 and "pip install 'fer-ensemble[server]'" in result.stderr, result.stderr


def test_opencv_and_ffmpeg_warnings_stay_quiet_unless_verbose(tiny_ensemble: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(CLIP.read_bytes()[1000:5000])  # no moov atom
    quiet = run_cli("video", str(truncated), "--ensemble", str(tiny_ensemble), check=False)
    assert lines(quiet.stderr) == [f"fer-ensemble video: {truncated}: not a readable video"]
    loud = run_cli("video", str(truncated), "--ensemble", str(tiny_ensemble), "--verbose", check=False)
    assert "moov atom not found" in loud.stderr
    text = tmp_path / "notes.jpg"  # OpenCV opens an image name as a one-picture sequence: nothing decodes
    text.write_bytes(b"\x00not a picture")  # binary: a text file is refused before OpenCV opens it
    result = run_cli("video", str(text), "--out", str(tmp_path / "out"), "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == ExitCode.INPUT_FAILED, result.stderr
    assert lines(result.stderr) == [f"fer-ensemble video: {text}: no frame could be decoded (not a video, or "
                                    "damaged from its start)"]
    assert not (tmp_path / "out").exists() and result.stdout == ""
    camera = run_cli("webcam", "--camera", "97", "--no-window", "--ensemble", str(tiny_ensemble), check=False)
    assert lines(camera.stderr) == ["fer-ensemble webcam: camera 97 cannot be opened (none attached, or in use)"]


# --- the test command itself ------------------------------------------------------------------

@pytest.mark.parametrize("uid, ci, expected, installs", [
    ("1000", "", 0, False),  # a plain user without sudo: say the browser test is skipped, go on
    ("1000", "true", 1, False),  # CI keeps the browser test required
    ("0", "", 0, True),  # root with apt-get: install
])
def test_the_test_command_installs_chromium_only_when_it_may(tmp_path: Path, uid: str, ci: str, expected: int,
                                                            installs: bool) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in {"id": f"echo {uid}", "sudo": "exit 1",
                       "apt-get": f"echo \"$@\" >> {tmp_path / 'apt.log'}"}.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    result = subprocess.run(["/bin/bash", "-c", f"source {REPO / 'scripts' / 'test.sh'}; ensure_chromium"],
                            capture_output=True, text=True, env={"PATH": str(stubs), "CI": ci}, timeout=30)
    assert result.returncode == expected, result.stderr
    assert (tmp_path / "apt.log").exists() == installs
    if not installs and not ci:
        assert "browser test will be skipped" in result.stderr


def test_a_refusal_run_in_process_reads_as_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """``cli_in_process``, which most refusals above run through, answers what ``run_cli`` answers
    (a usage error argparse raises, a refusal of a video command's handler), and leaves no trace:
    the environment, the working folder and the decoder log are as they were."""
    from fer_ensemble.media import decoder

    before = dict(os.environ), os.getcwd(), decoder._decoder_log
    for command in (["predict", str(PHOTO), "--bogus"], ["video", str(tmp_path), "--ensemble", MISSING]):
        fresh, here = run_cli(*command, check=False), cli_in_process(*command)
        assert (here.returncode, here.stdout, here.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr), command
        assert (dict(os.environ), os.getcwd(), decoder._decoder_log) == before, command


# --- annotations readable on group photos ----------------------------------------------------

def group_faces(file: str) -> list:
    from fer_ensemble.constants import EMOTIONS
    from fer_ensemble.metrics import read_face_boxes
    from fer_ensemble.runtime.face import Face

    boxes = read_face_boxes(REPO / "benchmarks" / "group-photo-faces.csv")[file]
    probabilities = {e: 0.02 for e in EMOTIONS} | {"happiness": 0.86}
    return [Face(box, "happiness", 0.86, probabilities) for box in boxes]


@pytest.mark.parametrize("file, size", [("nasa_s131e010010_group_portrait.jpg", (1280, 876)),
                                        ("nasa_sts106_crew.jpg", (1280, 878))])
def test_labels_and_panels_stay_in_the_image_and_off_other_faces(file: str, size: tuple[int, int]) -> None:
    from fer_ensemble.runtime.drawing import layout_faces

    faces = group_faces(file)
    width, height = size
    layouts = layout_faces(faces, 8, width, height)
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]
    labels = [layout.label.rect for layout in layouts]
    panels = [layout.panel for layout in layouts if layout.panel is not None]

    def inside(r) -> bool:
        return r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height

    def overlap(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    assert all(inside(r) for r in labels + panels)
    for i, label in enumerate(labels):
        assert not any(overlap(label, other) for other in labels[:i] + labels[i + 1:]), "tags overlap"
        assert not any(overlap(label, box) for j, box in enumerate(boxes) if j != i), "a tag covers a face"
    for i, panel in enumerate(panels):
        assert not any(overlap(panel, other) for other in boxes + labels + panels[:i] + panels[i + 1:])
    assert panels  # some faces still get their bars


def test_a_face_at_the_top_edge_keeps_its_label_inside() -> None:
    from fer_ensemble.constants import EMOTIONS
    from fer_ensemble.runtime.drawing import draw_faces, layout_faces
    from fer_ensemble.runtime.face import Face

    face = Face((600, 0, 120, 110), "anger", 0.34, {e: 0.09 for e in EMOTIONS} | {"anger": 0.34})
    (layout,) = layout_faces([face], 8, 1280, 878)
    assert layout.label.rect[1] >= 0 and layout.label.rect[2] <= 1280
    canvas = draw_faces(np.zeros((878, 1280, 3), np.uint8), [face], EMOTIONS)
    assert canvas.shape == (878, 1280, 3)


def test_the_palette_reads_on_white_and_under_its_tags() -> None:
    from fer_ensemble.runtime.drawing import COLORS, _ink, contrast_ratio

    for emotion, color in COLORS.items():
        assert contrast_ratio(color, (255, 255, 255)) >= 3.0, emotion  # timeline lines, bar panels
        assert contrast_ratio(color, _ink(color)) >= 4.5, emotion  # a tag's text on its colour


def test_a_held_face_is_drawn_dimmed_and_dashed() -> None:
    """A held face (missed by the detector in this frame) is not drawn like a live one: its box is
    dashed (background shows between the dashes) and its tag dimmed."""
    from fer_ensemble.constants import EMOTIONS
    from fer_ensemble.runtime.drawing import draw_faces
    from fer_ensemble.runtime.face import Face

    live = Face((100, 100, 200, 200), "happiness", 0.9, {e: 0.0 for e in EMOTIONS} | {"happiness": 0.9})
    held = Face(live.box, live.label, live.score, live.probabilities, held=True)
    background = np.full((480, 640, 3), 90, np.uint8)
    shown, kept = draw_faces(background, [live], EMOTIONS), draw_faces(background, [held], EMOTIONS)
    assert (shown != kept).any()
    top_edge = (slice(99, 102), slice(110, 290))
    assert (kept[top_edge] == 90).all(axis=-1).any() and not (shown[top_edge] == 90).all(axis=-1).any()
    changed = lambda image: np.abs(image.astype(int) - 90).sum(axis=-1)  # noqa: E731
    assert changed(kept).sum() < 0.7 * changed(shown).sum()  # dimmed


def test_output_piped_into_head_ends_quietly(tiny_ensemble: Path) -> None:
    photos = " ".join([str(PHOTO)] * 12)
    command = (f"{sys.executable} -m fer_ensemble.cli predict {photos} --json --ensemble {tiny_ensemble} "
               "| head -1; exit ${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert len(lines(result.stdout)) == 1
    assert result.returncode == 0 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def long_clip(path: Path, loops: int = 5) -> Path:
    """The bundled clip played ``loops`` times over, in one mp4 (longer than a pipe's buffer holds
    as JSON lines)."""
    capture, frames = cv2.VideoCapture(str(CLIP)), []
    while (read := capture.read())[0]:
        frames.append(read[1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 15, frames[0].shape[1::-1])
    for frame in frames * loops:
        writer.write(frame)
    writer.release()
    return path


def piped(command: str, into: str = "head -1") -> subprocess.CompletedProcess:
    """``fer-ensemble COMMAND | into`` in bash, its exit status the command's (60 s at most)."""
    line = f"{sys.executable} -m fer_ensemble.cli {command} | {into}; exit ${{PIPESTATUS[0]}}"
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_distinct_photos_piped_into_head_end_quietly(tiny_ensemble: Path, tmp_path: Path) -> None:
    """12 distinct photos (the same photo named 12 times is read once): the writes after head
    exits meet a closed pipe, and the command ends at once, exit 0, without a traceback."""
    for k in range(12):
        shutil.copy(PHOTO, tmp_path / f"photo{k:02d}.jpg")
    result = piped(f"predict {tmp_path} --json --ensemble {tiny_ensemble}")
    assert len(lines(result.stdout)) == 1
    assert result.returncode == 0 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_the_video_commands_end_on_a_closed_pipe(tiny_ensemble: Path, tmp_path: Path) -> None:
    """webcam --no-window and video watch FFmpeg's messages through a pipe on fd 1 (``DecoderLog``):
    when the real stdout closes, the command ends promptly, exit 0, without a traceback (it used to
    fill that pipe and block for ever, its pump thread dead)."""
    clip = long_clip(tmp_path / "long.mp4")
    webcam = piped(f"webcam --no-window --unpaced --source {clip} --ensemble {tiny_ensemble}")
    assert len(lines(webcam.stdout)) == 1 and json.loads(webcam.stdout)["frame"] == 1
    video = piped(f"video {clip} --max-frames 20 --no-progress --out {tmp_path / 'out'} --ensemble {tiny_ensemble}",
                  into="true")
    for result in (webcam, video):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


# --- the Python API: shared by threads, and what it is given (issue 22, items 1 and 5) -------------

@pytest.mark.parametrize("detector", ["blazeface", "haar"])
def test_one_recognizer_shared_by_eight_threads_answers_as_one_thread(detector: str) -> None:
    """OpenCV's cascade is not thread-safe: a shared HaarFaceDetector keeps one per thread."""
    from concurrent.futures import ThreadPoolExecutor

    from fer_ensemble.runtime.detectors import create_detector
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer(detector=create_detector({"detector": detector}))
    photos = [cv2.imread(str(SAMPLES / name)) for name in ("astronaut.png", "grace_hopper.jpg", "camera.png")]
    photos.append(cv2.resize(photos[1], None, fx=0.5, fy=0.5))
    expected = [recognizer.predict(photo) for photo in photos]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: (i % 4, recognizer.predict(photos[i % 4])), range(96)))
    assert all(faces == expected[i] for i, faces in answers)


def test_the_api_takes_what_has_one_obvious_meaning_and_names_the_rest() -> None:
    from PIL import Image

    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer()
    bgr = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    (face,) = recognizer.predict(gray)
    for same in (gray[..., None], gray.astype(np.uint16) * 257, gray / 255.0):
        assert [f.box for f in recognizer.predict(same)] == [face.box]
    pil = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert recognizer.predict(pil) == recognizer.predict(bgr)
    for bad, error, words in ((None, TypeError, "did cv2.imread fail"), ("photo.jpg", TypeError, "cv2.imread('photo.jpg')"),
                              (np.zeros((0, 0, 3), np.uint8), ValueError, "shape (0, 0, 3)"),
                              (gray * 1.0, ValueError, "values in [0, 1]"), ([1, 2], TypeError, "not list"),
                              (np.zeros((4, 4, 2), np.uint8), ValueError, "shape (4, 4, 2)")):
        with pytest.raises(error, match=re.escape(words)):
            recognizer.predict(bad)
    with pytest.raises(ValueError, match="smoothing"):
        EmotionRecognizer(ema_weight=0)


def sideways_phone_photo(path: Path) -> np.ndarray:
    """Grace Hopper as a phone held upright stores her: the pixels turned a quarter to the left,
    EXIF orientation 6 saying "turn right to show". Returns the photo as it is shown."""
    from PIL import Image

    upright = cv2.imread(str(PHOTO))
    stored = Image.fromarray(cv2.cvtColor(cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE), cv2.COLOR_BGR2RGB))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    return upright


def test_a_phone_photo_stored_sideways_is_read_as_it_is_shown(tmp_path: Path) -> None:
    """The command line (cv2.imdecode), the API given the PIL image, and annotate all stand the
    photo up by its EXIF orientation: one face, boxed where the upright photo has it. Read as
    stored, the turned scans would find the face on its side, in other pixels."""
    from PIL import Image

    from fer_ensemble.runtime.detection import iou
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    photo = tmp_path / "portrait.jpg"
    upright = sideways_phone_photo(photo)
    recognizer = EmotionRecognizer()
    (expected,) = recognizer.predict(upright)
    (cli,) = json.loads(run_cli("predict", str(photo), "--json").stdout)["faces"]
    (api,) = recognizer.predict(Image.open(photo))
    for box in (cli["box"], api.box):
        assert iou(tuple(box), expected.box) > 0.8, (box, expected.box)
    assert cli["label"] == api.label == expected.label
    assert recognizer.annotate(Image.open(photo), [api]).shape == upright.shape


def test_a_phone_video_stored_sideways_is_read_as_it_is_shown(tmp_path: Path) -> None:
    """A phone stores a portrait video's frames turned and says so in the track header's display
    matrix (ISO/IEC 14496-12, tkhd). OpenCV's FFmpeg backend turns the frames back by default
    (CAP_PROP_ORIENTATION_AUTO); this keeps it so for ``video``: the annotated video has the
    upright shape and the face's box is where the upright frame has it."""
    import struct

    from fer_ensemble.runtime.detection import iou
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    upright = cv2.resize(cv2.imread(str(PHOTO)), (320, 376))
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    clip = tmp_path / "portrait.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, stored.shape[1::-1])
    for _ in range(5):
        writer.write(stored)
    writer.release()
    data = bytearray(clip.read_bytes())
    matrix = data.index(b"tkhd") + 4 + 4 + 20 + 8 + 8  # version 0: after the flags, times, ids and layers
    assert struct.unpack(">9i", data[matrix:matrix + 36]) == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)  # turn right
    clip.write_bytes(bytes(data))

    run_cli("video", str(clip), "--out", str(tmp_path / "out"))
    capture = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mp4"))
    assert capture.read()[1].shape == upright.shape
    (expected,) = EmotionRecognizer().predict(upright)
    first = json.loads((tmp_path / "out" / "timeline.jsonl").read_text().splitlines()[0])
    (face,) = first["faces"]
    assert iou(tuple(face["box"]), expected.box) > 0.8, (face["box"], expected.box)


def test_an_iphone_heic_photo_is_read_with_the_heic_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV does not decode HEIC: a folder scan takes it (any case of .heic), predict reads it
    through pi-heif with the face where the JPEG has it and writes a .jpg copy; without the
    extra, the photo is one line that says how to read it."""
    from fer_ensemble.media.images import read_image
    from fer_ensemble.runtime.detection import iou

    folder = tmp_path / "phone"
    folder.mkdir()
    heic_photo(folder / "IMG_0001.HEIC")
    result = run_cli("predict", str(folder), "--json", "--out", str(tmp_path / "out"))
    (record,) = [json.loads(line) for line in lines(result.stdout)]
    (jpeg,) = json.loads(run_cli("predict", str(PHOTO), "--json").stdout)["faces"]
    (face,) = record["faces"]
    assert iou(tuple(face["box"]), tuple(jpeg["box"])) > 0.9 and face["label"] == jpeg["label"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["IMG_0001.HEIC.jpg", "fer-ensemble.json"]
    monkeypatch.setitem(sys.modules, "pi_heif", None)  # as if the heic extra were not installed
    with pytest.raises(InputError, match=re.escape("IMG_0001.HEIC: a HEIC/HEIF photo (the format of iPhones), "
                                                   "which OpenCV does not read: pip install 'fer-ensemble[heic]'")):
        read_image(folder / "IMG_0001.HEIC")


def damaged_copies(data: bytes):
    """``data`` with one byte changed, at positions through its headers and first coded data."""
    for position in range(12, 400, 5):
        for value in (0, 128):
            damaged = bytearray(data)
            damaged[position] = value
            yield bytes(damaged)


def test_a_damaged_heic_photo_is_one_line_whatever_the_damage(tmp_path: Path) -> None:
    """libheif reports damage as ValueError, SyntaxError, EOFError, IndexError... (a review found
    each by changing one byte); read_image turns every kind into its one line (InputError)."""
    from fer_ensemble.media.images import read_image

    path = tmp_path / "IMG_0001.heic"
    outcomes = []
    for damaged in damaged_copies(heic_photo(path)):
        path.write_bytes(damaged)
        try:
            outcomes.append(read_image(path).shape)
        except InputError as error:
            outcomes.append(str(error).split(": ", 1)[1])
    assert any(str(o).startswith("not a readable HEIC/HEIF photo (") for o in outcomes)  # seen, as one line


def test_labels_csvs_as_users_save_them(tmp_path: Path) -> None:
    """Issue 22, items 6, 9, 15: Excel's "CSV UTF-8" (a byte-order mark) is read; a binary file, a
    header without rows, a folder and a missing groups file each get one line naming what is wrong."""
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbffile,label\n" + f"{PHOTO},neutral\n".encode())
    result = run_cli("evaluate", "--labels", str(excel), "--json")
    assert json.loads(result.stdout)["per_image"]["n"] == 1
    (tmp_path / "header.csv").write_text("file,label\n")
    for labels, words in ((CLIP, "not a text CSV file"), (tmp_path / "header.csv", "a header but no rows"),
                          (tmp_path, "a folder, not a labels file")):
        bad = cli_in_process("evaluate", "--labels", str(labels))
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and words in bad.stderr, bad.stderr
    groups = cli_in_process("evaluate", "--labels", str(excel), "--group-by", "person", "--groups",
                            str(tmp_path / "nope.csv"))
    assert groups.returncode == 2 and "no groups file" in groups.stderr, groups.stderr


def test_evaluate_prints_no_recall_for_a_class_without_images(tmp_path: Path) -> None:
    """Issue 22, item 19: a dash, not 'recall 0.000', where a class has no images (or no predictions)."""
    labels = tmp_path / "one.csv"
    labels.write_text(f"file,label\n{PHOTO},neutral\n")
    rows = {line.split()[0]: line.split() for line in run_cli("evaluate", "--labels", str(labels)).stdout.splitlines()
            if line.strip() and line.split()[0] in ("neutral", "happiness")}
    assert rows["neutral"][1:4] == ["1", "1.000", "1.000"] and rows["happiness"][1:4] == ["0", "-", "-"]


def test_evaluate_out_writes_its_json_without_matplotlib_and_plain_file_names(
        tiny_ensemble: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Issue 22, items 10 and 18: the report JSON first, the PNGs only where matplotlib is (one line
    naming the plot extra otherwise, after the work, never an empty folder); no '(', '+' or ')' in
    the file names an ensemble's name would give them."""
    import importlib.util

    from fer_ensemble.cli import main

    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\n{PHOTO},neutral\n{SAMPLES / 'astronaut.png'},happiness\n")
    args = ["evaluate", str(tiny_ensemble), "--labels", str(labels), "--crops", "--json"]
    assert main([*args, "--out", str(tmp_path / "plots")]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["ensemble-small-large-labels-per-image-confusion.png", "ensemble-small-large-labels.json",
                     "fer-ensemble.json"]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "light")]) == 0
    assert sorted(p.name for p in (tmp_path / "light").iterdir()) == ["ensemble-small-large-labels.json",
                                                                      "fer-ensemble.json"]
    assert "pip install 'fer-ensemble[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize("command, code, message", [
    (["video", "{folder}"], 1, "{folder}: a folder, not a video file"),
    (["webcam", "--source", "{folder}", "--no-window"], 1, "{folder}: a folder, not a video file"),
    (["evaluate", "{folder}", "--labels", "{folder}/labels.csv", "--crops"], 2, "{folder}: a folder without best.pt"),
])
def test_a_folder_where_a_file_is_expected_is_called_a_folder(command: list[str], code: int, message: str,
                                                               tmp_path: Path) -> None:
    """Issue 22, item 15: not "no such file", and a folder given as the model is not a request for torch."""
    (tmp_path / "labels.csv").write_text(f"file,label\n{PHOTO},neutral\n")
    result = cli_in_process(*(part.format(folder=tmp_path) for part in command))
    assert result.returncode == code and message.format(folder=tmp_path) in result.stderr, result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr



@pytest.mark.parametrize("command, code, message", [
    (["predict", "{folder}/clip.mp4"], 1, "{folder}/clip.mp4: a video, not a photo (fer-ensemble video reads videos)"),
    (["webcam", "--source", "{folder}/notes.txt", "--no-window"], 1,
     "fer-ensemble webcam: {folder}/notes.txt: not a video (a text file)"),
    (["webcam", "--source", "{folder}/clip.mp4", "--camera", "1", "--no-window"], 2,
     "fer-ensemble webcam: --source and --camera name two inputs: give one"),
])
def test_the_wrong_kind_of_file_is_named_for_what_it_is(command: list[str], code: int, message: str,
                                                        tiny_ensemble: Path, tmp_path: Path) -> None:
    """Robustness issue, item 15: a video given to predict is called a video, with the command that
    reads it; a text file given to webcam --source is not a video (FFmpeg plays one as a damaged
    video of its characters); --camera beside --source is refused, not ignored."""
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    (tmp_path / "notes.txt").write_text("Notes on the recording session.\n" * 4000)
    result = cli_in_process(*(part.format(folder=tmp_path) for part in command), "--ensemble", str(tiny_ensemble))
    assert result.returncode == code and message.format(folder=tmp_path) in lines(result.stderr), result.stderr


def test_a_video_without_its_extension_is_told_by_its_container(tmp_path: Path) -> None:
    """read_image's error for an MP4 or AVI named without a video extension says it is a video too;
    a damaged photo stays a damaged photo."""
    from fer_ensemble.media.images import read_image

    shutil.copy(CLIP, tmp_path / "clip")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(InputError, match="a video, not a photo"):
        read_image(tmp_path / "clip")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "broken.jpg")

def test_missing_inputs_and_output_folders_before_any_work(ferplus: Path, tmp_path: Path) -> None:
    """Issue 22, item 14: fit-ensemble names a missing card in one line (exit 2, no [Errno 2]), and
    tools.pack_data makes its --out's folders instead of failing after its work."""
    result = cli_in_process("fit-ensemble", str(tmp_path / "nope.json"), "--data", str(ferplus), "--out",
                            str(tmp_path / "fit"))
    assert result.returncode == 2 and lines(result.stderr) == [
        f"fer-ensemble fit-ensemble: no model card at {tmp_path / 'nope.json'}"], result.stderr
    packed = tmp_path / "no" / "such" / "folder" / "test.npz.xz"
    run_tool("pack_data", "--data", str(ferplus), "--out", str(packed), "--splits", "test")
    assert packed.stat().st_size > 1_000_000


# --- one bad input never stops a run --------------------------------------------------------

@pytest.fixture(scope="module")
def huge_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40000 x 40000 PNG (1600 megapixels, past OpenCV's 1073.7; 194 KB on disk)."""
    path = tmp_path_factory.mktemp("huge") / "b_huge.png"
    path.write_bytes(huge_png(40000))
    return path


HUGE_LINE = "image of 40000x40000 = 1600.0 megapixels, more than the 1073.7 OpenCV decodes"


def test_an_image_past_opencvs_limit_is_one_line_and_the_run_goes_on(huge_photo: Path, tiny_ensemble: Path,
                                                                     tmp_path: Path) -> None:
    """Robustness issue, item 5: its size from the header, before decoding (no OpenCV assertion), the
    inputs after it read, exit 1; an image played as a video (webcam --source) is called that, not damaged."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "a.jpg")
    shutil.copy(huge_photo, folder / huge_photo.name)
    shutil.copy(SAMPLES / "astronaut.png", folder / "c.png")
    result = run_cli("predict", str(folder), "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == ExitCode.INPUT_FAILED, result.stderr
    assert lines(result.stderr) == [f"{folder / huge_photo.name}: {HUGE_LINE}",
                                    "3 image(s): 2 with faces (2 faces), 0 without a face, 1 failed"]
    assert [line.split(":")[0] for line in lines(result.stdout)] == [str(folder / "a.jpg"), str(folder / "c.png")]
    labels = folder / "labels.csv"
    labels.write_text(f"file,label,person\na.jpg,neutral,p\n{huge_photo.name},happiness,p\nc.png,happiness,p\n")
    for extra in ([], ["--resting-face", "person"], ["--crops"]):  # the evaluation goes on, the photo a miss
        scored = run_cli("evaluate", str(tiny_ensemble), "--labels", str(labels), "--json", *extra, check=False)
        assert scored.returncode == ExitCode.INPUT_FAILED, scored.stderr
        assert lines(scored.stderr) == [f"{folder / huge_photo.name}: {HUGE_LINE}; counted as a photo without a face"]
        assert json.loads(scored.stdout)["name"]
    played = cli_in_process("webcam", "--source", str(huge_photo), "--no-window", "--ensemble", str(tiny_ensemble))
    assert played.returncode == ExitCode.INPUT_FAILED
    assert lines(played.stderr) == [f"fer-ensemble webcam: {huge_photo}: {HUGE_LINE}"]


def test_every_reader_refuses_a_huge_image_by_one_shared_check(huge_photo: Path, tiny_ensemble: Path) -> None:
    """read_image (predict, --resting-face, evaluate --labels, batch) and batch's stored reason say
    the size; the server's --max-megapixels goes through the same check (413)."""
    from fer_ensemble.batch.work import BatchSettings, Worker
    from fer_ensemble.media.images import OPENCV_MAX_PIXELS, TooManyPixels, check_pixels, read_image

    with pytest.raises(TooManyPixels, match=re.escape(f"{huge_photo}: {HUGE_LINE}")):
        read_image(huge_photo, gray=True)
    stored = Worker(BatchSettings(ensemble=str(tiny_ensemble))).run({"source": str(huge_photo), "kind": "image"})
    assert stored.error == HUGE_LINE
    check_pixels((32768, 32768))  # exactly OpenCV's bound: taken
    with pytest.raises(TooManyPixels, match=r"^image of 20000x20000 = 400.0 megapixels, more than the 50.0 "
                                            r"this server takes \(serve --max-megapixels\)$"):
        check_pixels((20000, 20000), 50_000_000, "this server takes (serve --max-megapixels)")
    with pytest.raises(TooManyPixels, match="more than the 1073.7 OpenCV decodes"):  # a server bound above OpenCV's
        check_pixels((40000, 40000), 4 * OPENCV_MAX_PIXELS, "this server takes")


def test_declared_sizes_match_what_opencv_decodes() -> None:
    """The header reader behind the check agrees with OpenCV for every format it reads, and says
    None (the decoder then decides) for the others."""
    from fer_ensemble.media.images import declared_size

    image = cv2.imread(str(PHOTO))
    for ext in (".png", ".jpg", ".gif", ".bmp", ".webp", ".ppm", ".pgm", ".pbm"):
        ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if ext in (".pgm", ".pbm") else image)
        assert ok and declared_size(data) == (512, 600), ext
    ok, lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert declared_size(lossless) == (512, 600)
    assert declared_size(cv2.imencode(".tif", image)[1]) is None
    assert declared_size(b"\x89PNG\r\n\x1a\n") is None  # cut short


def test_an_input_that_cannot_be_read_is_one_line_and_the_run_goes_on(tiny_ensemble: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """Robustness issue, item 6: an OSError on reading one photo (no permission: simulated, as a test
    may run as root, whom chmod 000 does not stop) is that photo's line; the others are read, the
    closing line printed, exit 1 (it was exit 2 and nothing after it)."""
    from fer_ensemble.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(PHOTO, folder / name)
    fromfile = np.fromfile

    def refusing(file, *args, **kwargs):
        if Path(file).name == "b.jpg":
            raise PermissionError(13, "Permission denied", str(file))
        return fromfile(file, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", refusing)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")  # what main sets, restored after the test
    assert main(["predict", str(folder), "--ensemble", str(tiny_ensemble)]) == ExitCode.INPUT_FAILED
    out, err = capsys.readouterr()
    assert lines(err) == [f"{folder / 'b.jpg'}: cannot read (Permission denied)",
                          "3 image(s): 2 with faces (2 faces), 0 without a face, 1 failed"]
    assert len(lines(out)) == 2


def test_every_json_output_is_strict_json() -> None:
    """Robustness issue, item 9: no output the package writes (predict --json, video's timeline and
    summary, evaluate --json, the server's answers, ensemble files...) may hold NaN, which JSON
    readers refuse: each goes through ``errors.json_text`` (allow_nan=False), which names the problem
    in one line. Only text that is no output may call json.dumps itself."""
    import ast

    from fer_ensemble.errors import OutputError, json_text

    not_outputs = {("batch/engines.py", 1)}  # a worker's result, passed to its parent process
    package = REPO / "src" / "fer_ensemble"
    found = {}
    for path in package.rglob("*.py"):
        calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and node.func.attr in ("dump", "dumps")
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"
                 and not any(k.arg == "allow_nan" for k in node.keywords)]
        if calls:
            found[str(path.relative_to(package))] = len(calls)
    assert set(found.items()) == not_outputs
    assert json_text({"score": 0.5}, indent=1) == '{\n "score": 0.5\n}'
    for value in (float("nan"), float("inf"), np.float32("nan")):
        with pytest.raises(OutputError, match="NaN or infinity, which JSON cannot hold"):
            json_text({"faces": [{"score": float(value)}]})


# --- Ctrl-C: stop now, keep what was done, say where (issue "Robustness", item 11) ---------------

def interrupted(args: list[str], ready, timeout: float = 60, group: bool = True) -> tuple[int, str, float]:
    """Run ``fer-ensemble ARGS`` in its own process group, send the group SIGINT (as Ctrl-C in a
    terminal does; ``group`` False: the command's process alone, as ``kill -INT`` does) once
    ``ready(process)`` is true, and return its exit code, its stderr and the seconds it took to end
    after the signal."""
    process = subprocess.Popen([sys.executable, "-m", "fer_ensemble.cli", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=answer_ctrl_c)
    try:
        deadline = time.monotonic() + timeout
        while not ready(process):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        if group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=timeout)
        seconds = time.monotonic() - sent
        left = session_processes(process.pid)
        while left and time.monotonic() - sent < timeout:
            time.sleep(0.1)
            left = session_processes(process.pid)
        assert not left, f"processes {left} outlived the command"
        return process.returncode, stderr, seconds
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        for pid in session_processes(process.pid):  # a failed test leaves nothing running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def answer_ctrl_c() -> None:
    """In the command's process before it starts: SIGINT at its default, so that Python answers it
    even when the suite itself was started with SIGINT ignored (a shell's background job: ``cmd &``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def session_processes(session: int) -> list[int]:
    """The processes of the session ``session`` (a command started with ``start_new_session``: its
    workers too, whatever their process group, as Ray's actors and raylet have their own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # ended meanwhile
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def copies(folder: Path, count: int) -> Path:
    """``count`` distinct names (hard links) of the sample photo in ``folder``."""
    folder.mkdir()
    for k in range(count):
        os.link(PHOTO, folder / f"photo{k:03d}.jpg")
    return folder


def test_ctrl_c_in_predict_says_what_was_done_and_where(tiny_ensemble: Path, tmp_path: Path) -> None:
    photos = copies(tmp_path / "photos", 400)
    out, table = tmp_path / "annotated", tmp_path / "faces.csv"
    code, stderr, seconds = interrupted(
        ["predict", str(photos), "--out", str(out), "--csv", str(table), "--ensemble", str(tiny_ensemble)],
        ready=lambda p: len(list(out.glob("photo*.jpg"))) > 1)  # two written whole
    assert code == 130 and seconds < 15 and "Traceback" not in stderr, stderr
    done = re.search(rf"interrupted: (\d+) of 400 photo\(s\) done, outputs in {re.escape(str(out))} and "
                     rf"{re.escape(str(table))}$", stderr.strip())
    assert done and 0 < int(done.group(1)) < 400, stderr
    rows = list(csv.DictReader(table.open()))  # renamed into place at the interrupt: a row per photo done
    assert len(rows) == int(done.group(1)) and len({r["file"] for r in rows}) == len(rows)
    assert not [p.name for p in tmp_path.glob(".*partial*")] + [p.name for p in out.glob(".*")]


def partial_table(folder: Path, name: str) -> Path | None:
    """The hidden partial file of ``folder/name`` a command is writing (``outputs.partial_path``, its
    process id unknown here), or None."""
    stem, suffix = name.rsplit(".", 1)
    return next(folder.glob(f".{stem}.*.partial.{suffix}"), None)


def test_ctrl_c_in_the_other_commands_says_what_they_kept(tiny_ensemble: Path, ferplus: Path, tmp_path: Path) -> None:
    """Issue "Robustness", item 11: train, evaluate (and the other commands that write once done)
    said a bare "interrupted"; train now names its last checkpoint and how to continue."""
    photos = copies(tmp_path / "photos", 3000)
    labels = photos / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"{p.name},happiness\n" for p in sorted(photos.glob("*.jpg"))))
    started = time.monotonic()
    code, stderr, seconds = interrupted(["evaluate", str(tiny_ensemble), "--labels", str(labels)],
                                        ready=lambda p: time.monotonic() > started + 4)
    assert code == 130 and seconds < 15 and "Traceback" not in stderr, stderr
    assert lines(stderr)[-1] == "fer-ensemble evaluate: interrupted: nothing written (it writes its outputs once done)"
    need("torch")
    run = tmp_path / "run"
    code, stderr, seconds = interrupted(
        ["train", *TINY_TRAIN, "--subset", "128", "--valid-subset", "64", "--data", str(ferplus), "--epochs", "50",
         "--out", str(run)],
        ready=lambda p: (run / "checkpoint.pt").is_file(), timeout=300)
    assert code == 130 and seconds < 15 and "Traceback" not in stderr, stderr
    done = re.fullmatch(rf"fer-ensemble train: interrupted: (\d+) epoch\(s\) done, the last kept in "
                        rf"{re.escape(str(run / 'checkpoint.pt'))}; continue with fer-ensemble train --out "
                        rf"{re.escape(str(run))} --resume", lines(stderr)[-1])
    assert done and int(done.group(1)) >= 1, stderr


def test_a_ctrl_c_that_cut_an_import_short_is_still_a_ctrl_c(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C during a C extension's first import (matplotlib's, as train draws its curves at an
    epoch's end) surfaces as ImportError "initialization failed" caused by the KeyboardInterrupt: the
    command still answers "interrupted" and 130, and train still names its checkpoint, no traceback.
    (The train test above met it once in a full run: the interrupt landed in that import.)"""
    from fer_ensemble.apps import train as train_app
    from fer_ensemble.cli import answered
    from fer_ensemble.errors import caused_by_ctrl_c

    def cut_short() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # noqa: B904 (Python's own chaining, as an import does)

    with pytest.raises(ImportError) as caught:
        cut_short()
    assert caused_by_ctrl_c(caught.value) and not caused_by_ctrl_c(ImportError("initialization failed"))
    assert answered("fer-ensemble evaluate", cut_short, "nothing written") == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "fer-ensemble evaluate: interrupted: nothing written\n"
    with pytest.raises(ImportError):  # an ImportError of its own is not hidden
        answered("fer-ensemble evaluate", lambda: (_ for _ in ()).throw(ImportError("initialization failed")))
    monkeypatch.setattr("fer_ensemble.training.train.run_training", lambda args: cut_short())
    need("torch")
    args = train_app.add_train_arguments(argparse.ArgumentParser()).parse_args(["--model", "mobilenet_v2", "--out",
                                                                         str(tmp_path / "run")])
    assert answered("fer-ensemble train", lambda: train_app.run_train(args)) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err.startswith("fer-ensemble train: interrupted: no epoch finished; nothing to resume")


def test_ctrl_c_in_video_keeps_a_playable_video_and_its_summary(tiny_ensemble: Path, tmp_path: Path) -> None:
    clip, out = long_clip(tmp_path / "long.mp4", loops=10), tmp_path / "out"
    code, stderr, seconds = interrupted(
        ["video", str(clip), "--out", str(out), "--no-progress", "--ensemble", str(tiny_ensemble)],
        ready=lambda p: (table := partial_table(out, "timeline.csv")) is not None and table.stat().st_size > 2000)
    assert code == 130 and seconds < 15 and "Traceback" not in stderr, stderr
    done = re.search(rf"interrupted: (\d+) frame\(s\) read, (\d+) processed, outputs for them in {re.escape(str(out))}$",
                     stderr.strip())
    assert done and 0 < int(done.group(1)) < 600, stderr
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "fer-ensemble.json", "summary.json", "timeline.csv",
                                                     "timeline.jsonl", "timeline.png"]  # each renamed in, none partial
    frames = {int(r["frame"]) for r in csv.DictReader((out / "timeline.csv").open())}
    assert 0 < len(frames) <= int(done.group(2))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_read"] == int(done.group(1)) and summary["tracks"]
    assert len((out / "timeline.jsonl").read_text().splitlines()) == int(done.group(2))
    assert (out / "timeline.png").is_file()
    capture, shown = cv2.VideoCapture(str(out / "annotated.mp4")), 0
    while capture.read()[0]:
        shown += 1
    assert shown >= int(done.group(2)) - 1 > 0  # the last frame may have been drawn but not written


def test_ctrl_c_in_webcam_prints_its_closing_line(tiny_ensemble: Path, tmp_path: Path) -> None:
    clip = long_clip(tmp_path / "long.mp4", loops=10)
    code, stderr, seconds = interrupted(
        ["webcam", "--no-window", "--source", str(clip), "--ensemble", str(tiny_ensemble)],
        ready=lambda p: bool(p.stdout.readline()))
    assert code == 130 and seconds < 15 and "Traceback" not in stderr, stderr
    assert re.search(r"^\d+ frame\(s\) in .* fps\), .* dropped while busy$", stderr, re.M), stderr
    assert stderr.strip().splitlines()[-1].startswith("fer-ensemble webcam: interrupted: after "), stderr


@pytest.mark.parametrize(("engine", "group"), [("local", True), ("local", False), ("ray", True)],
                         ids=["ctrl-c", "kill-int", "ray-ctrl-c"])
def test_ctrl_c_in_a_batch_stops_the_workers(engine: str, group: bool, tiny_ensemble: Path, tmp_path: Path) -> None:
    """The queued sources are cancelled and the workers ended (they used to read every one, then
    hang on a second Ctrl-C), under either engine; what was written stays, summary.parquet included,
    and no process of the command's group outlives it (Ray's actors and raylet included)."""
    need("pyarrow")
    if engine == "ray":
        need("ray")
    photos, out = copies(tmp_path / "photos", 300), tmp_path / "out"
    code, stderr, seconds = interrupted(
        ["batch", str(photos), "--out", str(out), "--engine", engine, "--num-workers", "2", "--no-progress",
         "--ensemble", str(tiny_ensemble)],
        ready=lambda p: (out / "sources").is_dir() and any((out / "sources").glob("*.json")),  # a summary
        group=group)  # renamed into place, not its hidden .partial being written
    assert code == 130 and seconds < 20 and "Traceback" not in stderr, stderr
    done = re.search(rf"interrupted: (\d+) of 300 source\(s\) done, outputs in {re.escape(str(out))} ",
                     stderr.strip().splitlines()[-1])
    assert done and 0 < int(done.group(1)) < 300, stderr
    assert len(list((out / "sources").glob("*.json"))) == int(done.group(1))
    assert (out / "summary.parquet").is_file()

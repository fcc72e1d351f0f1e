"""``fer-ensemble predict PATH...``: images, folders and globs -> faces, emotions, annotated copies."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from fer_ensemble import __version__
from fer_ensemble.apps.common import add_recognizer_arguments, build_recognizer, warn
from fer_ensemble.apps.exits import add_exit_arguments, exit_code
from fer_ensemble.errors import InputError, Interrupted, OutputError, UserError, json_text
from fer_ensemble.media.images import read_image, writable_name, write_image
from fer_ensemble.media.inputs import Inputs, expand_inputs
from fer_ensemble.outputs import (
    MANIFEST,
    RowWriter,
    check_apart,
    check_manifest,
    check_output_file,
    output_file,
    output_folder,
    recorded_args,
    unique_path,
    write_manifest,
)
from fer_ensemble.runtime.rows import CSV_DECIMALS, FaceRow, face_columns


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("paths", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", help="folder for annotated copies (never one of the input folders)")
    parser.add_argument("--json", action="store_true",
                        help="JSON lines: one object per input, with 'error' for one that failed")
    parser.add_argument("--csv", help="write one CSV row per face to this file (a new one, or an earlier --csv "
                                      "output: never an input or another existing file)")
    parser.add_argument("--no-bars", action="store_true", help="annotate without probability bars")
    parser.add_argument("--resting-face", nargs="+", metavar="IMAGE",
                        help="photo(s) of the person at rest: every face is read relative to that resting "
                             "face (for photos of one person)")
    add_exit_arguments(parser)
    add_recognizer_arguments(parser, still=True)
    return parser


def resting_face(recognizer, paths: list[str]):
    """The resting face of the ``--resting-face`` photos (InputError for an unreadable one,
    UserError when none shows a face)."""
    try:
        return recognizer.resting_face(read_image(Path(p)) for p in paths)
    except ValueError as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"--resting-face: {error}") from None


@dataclass
class Tally:
    images: int = 0
    with_faces: int = 0
    faces: int = 0
    no_face: int = 0
    failed: int = 0  # not found, unreadable, or its annotated copy not written

    def line(self) -> str:
        return (f"{self.images} image(s): {self.with_faces} with faces ({self.faces} "
                f"face{'' if self.faces == 1 else 's'}), "
                f"{self.no_face} without a face, {self.failed} failed")


def describe(path: Path, faces) -> str:
    if not faces:
        return f"{path}: no face found"
    parts = [(f"turned too far to read (yaw {f.pose[0]:.0f}, pitch {f.pose[1]:.0f}; {f.label} {f.score:.2f} untrusted)"
              if f.turned else f"{f.label} {f.score:.2f}") + f" at {list(f.box)}" for f in faces]
    return f"{path}: {len(faces)} face{'s' if len(faces) > 1 else ''}: " + "; ".join(parts)


CSV_START = "file,face,"
"""How a ``--csv`` file of any version begins: an existing file that does not (and is not empty) is
never replaced."""


def check_outputs(args: argparse.Namespace, inputs: Inputs) -> Path | None:
    """The annotated-copies folder, after checking that neither output can harm an input (or, for
    ``--csv``, any file but an earlier ``--csv`` of ours): ``check_apart``, ``check_output_file``."""
    if args.csv:
        check_output_file(args.csv, [*inputs.files, *(args.resting_face or [])], "--csv", CSV_START)
    if not args.out:
        return None
    out = check_apart(args.out, args.paths, inputs.files, "photos")
    check_manifest(out, "predict")
    if args.csv and Path(args.csv).resolve() == (out / MANIFEST).resolve():
        raise UserError(f"--csv {args.csv}: that name holds the --out folder's manifest; give the CSV another name")
    return out


def where_outputs(out: Path | None, csv_path: str | None) -> str:
    """", outputs in X" naming the annotated copies' folder and the CSV ("" for neither: the answers
    printed so far are the output)."""
    places = [str(place) for place in (out, csv_path) if place]
    return f", outputs in {' and '.join(places)}" if places else ""


def run_predict(args: argparse.Namespace) -> int:
    inputs = expand_inputs(args.paths, exclude=Path(args.out) if args.out else None)
    out = check_outputs(args, inputs)
    recognizer = build_recognizer(args)
    reference = resting_face(recognizer, args.resting_face) if args.resting_face else None
    tally = Tally()

    def failed(item: str | Path, message: str) -> None:
        tally.failed += 1
        warn(message)
        if args.json:
            print(json_text({"file": str(item), "error": message}), flush=True)

    for item in inputs.missing:
        failed(item, f"{item}: no such file, folder or match")
    if note := inputs.describe_skipped():
        warn(note)
    used: set[str] = {MANIFEST}  # names taken in the output folder (no input lives there: refused above)
    if out:
        out = output_folder(out)
        write_manifest(out, "predict", recorded_args(args), __version__)
    if args.csv:
        output_file(args.csv, "--csv")  # its folder made, as --out is
        if out and Path(args.csv).resolve().parent == out.resolve():
            used.add(Path(args.csv).name)  # no annotated copy takes the CSV's name
    writer = (RowWriter(args.csv, ["file", "face", *face_columns(args.geometry)], decimals=CSV_DECIMALS,
                        format="csv")  # CSV whatever its name; closed below, a Ctrl-C's included
              if args.csv else None)
    try:
        for path in inputs.files:
            tally.images += 1  # the one being read: an interrupt leaves it undone
            try:
                image = read_image(path)
            except InputError as error:
                failed(path, str(error))
                continue
            faces = recognizer.predict(image, resting_face=reference)
            tally.faces += len(faces)
            if faces:
                tally.with_faces += 1
            else:
                tally.no_face += 1
                if args.json or writer:  # the text output already says it, once
                    warn(f"{path}: no face found")
            annotated = None
            if out:
                try:
                    target = unique_path(out, writable_name(path.name), used)
                    write_image(target, recognizer.annotate(image, faces, bars=not args.no_bars))
                    annotated = str(target)
                except OutputError as error:
                    tally.failed += 1
                    warn(str(error))
            if args.json:  # each input's own annotated copy, when --out wrote one
                print(json_text({"file": str(path), "faces": [f.to_dict() for f in faces],
                                 **({"annotated": annotated} if out else {})}), flush=True)
            elif not writer:
                print(describe(path, faces), flush=True)
            if writer:
                writer.write({"file": str(path), **FaceRow.of(str(path), 0, None, i, f).to_dict(args.geometry)}
                             for i, f in enumerate(faces))
    except KeyboardInterrupt:
        if writer:
            writer.close()  # the rows of the photos done
        raise Interrupted(f"{tally.images - 1} of {len(inputs.files)} photo(s) done"
                          + where_outputs(out, args.csv)) from None
    except BaseException:
        if writer:
            writer.discard()  # an earlier --csv of ours stays as it was
        raise
    if writer:
        writer.close()
    if not inputs.files and not inputs.missing:
        warn("no image in the given paths")
    warn(tally.line())
    return exit_code(failed=tally.failed > 0 or not inputs.files, found=tally.faces > 0, args=args)

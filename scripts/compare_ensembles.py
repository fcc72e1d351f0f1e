#!/usr/bin/env python3
"""Candidate ensembles side by side on everything that decides a release: FER+ Test, and real faces.

For each ensemble file (``fit-ensemble``'s output; ``shipped`` for the package's own), through the
project's own commands, as a user runs them:

- FER+ Test under FER+'s prior (``evaluate --data --split test --prior ferplus``, the headline);
- taiwan-posed, ``adapt`` cross-validated by performer (accuracy, macro recall, anger, disgust,
  fear after it: issue 20's bars), and the resting face (``evaluate --resting-face performer``,
  the expressive photos before and after);
- CK+48 per sequence with default settings (``evaluate --crops --group-by subject,sequence``);
- FER+ Valid under FER+'s prior, and taiwan-posed end to end (every photo, default settings);
- with ``--enrol K``, personal profiles: ``evaluate --enrol K --group-by performer --draws 10``;
  with ``--geometry`` too, the same run reads the faces' blendshapes (``evaluate --enrol --geometry``)
  and gives both columns: the profiles on the embeddings alone and with the blendshapes.

taiwan-posed and CK+48 are check sets: they choose between a few candidates and are never
trained on. Used to decide between the released members and a GPU session's (docs/training.md):

    python scripts/compare_ensembles.py shipped runs/gpu/ensemble.json --json-out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COLUMNS = ("FER+ Test", "adapt acc.", "adapt macro recall", "anger", "disgust", "fear",
           "resting face before", "resting face after", "CK+48 per sequence", "FER+ Valid", "taiwan-posed")
ENROL_COLUMN = "enrol {k}"
BLENDSHAPES_COLUMN = "enrol {k} + blendshapes"


def cli(*args: str, raw: Path | None = None) -> dict:
    """One ``fer-ensemble`` command's ``--json`` object (exit codes 0 and adapt's 'not improved' 3),
    also written to ``raw`` when given."""
    result = subprocess.run([sys.executable, "-m", "fer_ensemble.cli", *args, "--json"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    if result.returncode not in (0, 3):
        raise SystemExit(f"fer-ensemble {' '.join(args)} failed: {result.stderr.strip()}")
    if raw is not None:
        raw.write_text(result.stdout)
    return json.loads(result.stdout)


def measure(ensemble: str, ferplus: Path, taiwan: Path, ckplus: Path, enrol: int | None = None,
            raw_out: Path | None = None, geometry: bool = False) -> dict[str, float]:
    """The ``COLUMNS`` of one ensemble file (``shipped``: the package's), fractions in [0, 1], and
    with ``enrol`` the profiles' accuracy (``ENROL_COLUMN``; with ``geometry`` also with the
    blendshapes, ``BLENDSHAPES_COLUMN``, from the same run). With ``raw_out``, each command's JSON
    goes there too (``ferplus-test``, ``ferplus-valid``, ``adapt``, ``resting-face``, ``taiwan-posed``,
    ``ckplus48``, ``enrol``, each ``.json``) and adapt's output folder is kept there (``adapted``)."""
    model = [] if ensemble == "shipped" else [ensemble]
    chosen = [] if ensemble == "shipped" else ["--ensemble", ensemble]
    photos = ["--labels", str(taiwan / "labels.csv"), "--images", str(taiwan / "images")]

    def run(name: str, *args: str) -> dict:
        return cli(*args, raw=None if raw_out is None else raw_out / f"{name}.json")

    test = run("ferplus-test", "evaluate", *model, "--data", str(ferplus), "--split", "test", "--prior", "ferplus")
    valid = run("ferplus-valid", "evaluate", *model, "--data", str(ferplus), "--split", "valid", "--prior", "ferplus")
    with tempfile.TemporaryDirectory() as tmp:
        adapted = run("adapt", "adapt", *chosen, *photos, "--group-by", "performer",
                      "--out", str((raw_out or Path(tmp)) / "adapted"))
    after = adapted["cv_after"]
    resting = run("resting-face", "evaluate", *model, *photos, "--resting-face", "performer")
    plain = run("taiwan-posed", "evaluate", *model, *photos)
    ck = run("ckplus48", "evaluate", *model, "--labels", str(ckplus / "labels.csv"), "--images", str(ckplus / "images"),
             "--crops", "--group-by", "subject,sequence", "--groups", str(ckplus / "sequences.csv"))
    row = dict(zip(COLUMNS, (
        test["accuracy"], after["accuracy"], after["macro_recall"],
        *(after["per_class"][c]["recall"] for c in ("anger", "disgust", "fear")),
        resting["uncalibrated"]["per_image"]["accuracy"], resting["per_image"]["accuracy"],
        ck["per_group"]["accuracy"], valid["accuracy"], plain["per_image"]["accuracy"])))
    if enrol:
        profiles = run("enrol", "evaluate", *model, *photos, "--group-by", "performer", "--enrol", str(enrol),
                       "--draws", "10", *(["--geometry"] if geometry else []))
        embeddings_only = profiles["embeddings_only"] if geometry else profiles  # the same draws, no blendshapes
        row[ENROL_COLUMN.format(k=enrol)] = embeddings_only["per_image"]["accuracy"]
        if geometry:
            row[BLENDSHAPES_COLUMN.format(k=enrol)] = profiles["per_image"]["accuracy"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensembles", nargs="+", help="ensemble files ('shipped': the package's own)")
    parser.add_argument("--ferplus", type=Path, default=SHARED / "ferplus")
    parser.add_argument("--taiwan", type=Path, default=SHARED / "taiwan-posed")
    parser.add_argument("--ckplus", type=Path, default=SHARED / "ckplus48")
    parser.add_argument("--enrol", type=int, default=None, metavar="K",
                        help="also personal profiles with K photos per expression (evaluate --enrol K, 10 draws)")
    parser.add_argument("--geometry", action="store_true",
                        help="with --enrol: the profiles with the faces' blendshapes too (evaluate --geometry)")
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    parser.add_argument("--raw-out", type=Path, metavar="DIR",
                        help="also keep each command's JSON (and adapt's output) here, in a folder per ensemble "
                             "(its position and file name: 1-shipped, 2-ensemble.json, ...); a new folder")
    args = parser.parse_args()
    if args.geometry and not args.enrol:
        parser.error("--geometry goes with --enrol K")
    rows = {}
    for i, name in enumerate(args.ensembles, 1):
        raw = None if args.raw_out is None else args.raw_out / f"{i}-{Path(name).name}"
        if raw is not None:
            raw.mkdir(parents=True)  # a folder that exists is refused: nothing of an earlier run is mixed in
        rows[name] = measure(name, args.ferplus, args.taiwan, args.ckplus, args.enrol, raw, args.geometry)
    columns = list(next(iter(rows.values())))
    print("| ensemble | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[c]:.2f}" for c in columns) + " |")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fer-ensemble enrol``: one person's profile from their own labelled photos (or face crops),
with a self-check, written to the file they name (``--profile FILE`` on predict, video and webcam
then reads them through it)."""

from __future__ import annotations

import argparse

from fer_ensemble.apps.labelled_photos import (
    add_blendshapes_argument,
    add_labelled_photo_arguments,
    refuse_geometry_of_crops,
    said_unreadable,
)
from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import UserError, json_text
from fer_ensemble.labelled import LabelledImages, face_outputs, read_labelled_images
from fer_ensemble.outputs import check_output_file
from fer_ensemble.runtime.detectors import create_detector
from fer_ensemble.runtime.geometry import GeometryReader
from fer_ensemble.runtime.profile import ENROL_FRAMINGS, PROFILE_FORMAT, require_fitting
from fer_ensemble.runtime.recognizer import enrolled_profile, load_ensemble


def add_enrol_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_labelled_photo_arguments(parser, "file,label CSV of one person's photos (or face crops with --crops): any "
                                         "of the eight emotions, one or more photos each")
    parser.add_argument("--where", metavar="COLUMN=VALUE",
                        help="only the rows whose COLUMN is VALUE (one person of a CSV of several)")
    parser.add_argument("--out", required=True, help="the profile file to write (JSON; it holds face embeddings)")
    parser.add_argument("--ensemble", help="ensemble file (default: the shipped one); the profile works with it only")
    add_blendshapes_argument(parser, "enrol them with the embeddings; apps run with --geometry read the "
                                     "person's faces with them (docs/accuracy.md: better with fear, disgust "
                                     "and surprise)")
    parser.add_argument("--json", action="store_true", help="print the self-check as one JSON object")
    return parser


def rows_where(data: LabelledImages, args: argparse.Namespace) -> LabelledImages:
    """``data`` less the rows ``--where COLUMN=VALUE`` leaves out (all of it without the option)."""
    if not args.where:
        return data
    column, sep, value = args.where.partition("=")
    if not sep or not column:
        raise UserError(f"--where {args.where!r}: give COLUMN=VALUE, e.g. person=ana")
    groups = read_labelled_images(args.labels, args.images, column).groups
    assert groups is not None
    keep = [i for i, g in enumerate(groups) if g == value]
    if not keep:
        raise UserError(f"--where: no row has {column} = {value!r}")
    return LabelledImages([data.paths[i] for i in keep], data.labels[keep])


def run_enrol(args: argparse.Namespace) -> int:
    refuse_geometry_of_crops(args)
    data = rows_where(read_labelled_images(args.labels, args.images), args)
    out = check_output_file(args.out, [args.labels, *data.paths], "--out", '{"format": "' + PROFILE_FORMAT)
    ensemble = load_ensemble(args.ensemble)
    ensemble.require_embeddings()  # before any photo is read
    require_fitting()
    detector = None if args.crops else create_detector({"detector": args.detector})
    native, embeddings, found, shapes = face_outputs(ensemble.read_faces, data, detector, args.margin, args.offset,
                                                     ENROL_FRAMINGS, GeometryReader() if args.geometry else None)
    code = said_unreadable(data)  # said before a refusal too
    if not found.any():
        raise UserError(f"no face found in the {len(data)} image(s) of {args.labels}: nothing to enrol")
    profile = enrolled_profile(ensemble, native[found], embeddings[found], data.labels[found],
                               None if shapes is None else shapes[found])
    profile.save(out)
    missed = [str(p) for p, f in zip(data.paths, found) if not f and p not in data.unreadable]
    if args.json:
        print(json_text({"profile": str(out), "photos": int(found.sum()), "no_face": missed,
                          "blendshapes": profile.blendshapes is not None, "self_check": profile.self_check}))
    else:
        print(format_self_check(profile.self_check, str(out), missed))
        if args.geometry:
            print("  with blendshapes: read with them by apps run with --geometry" if profile.blendshapes is not None
                  else "  no blendshapes enrolled (the landmarker missed every face of some expression): "
                       "read by the embeddings alone")
    return code


def format_self_check(check: dict, out: str, missed: list[str]) -> str:
    """The self-check as a table: per enrolled class, its faces and how many a profile of the other
    faces reads right, beside the ensemble alone."""
    head = f"wrote {out}: the profile" if not out.startswith(("saved", "not saved")) else "the profile"
    tail = "" if head.startswith("wrote") else f", {out}"
    lines = [f"{head} of {sum(c['photos'] for c in check.values())} photos{tail}; self-check "
             "(each photo read by a profile of the others):",
             f"  {'class':<10} {'photos':>6} {'profile':>8} {'ensemble':>9}"]
    for name in EMOTIONS:
        if name in check:
            c = check[name]
            lines.append(f"  {name:<10} {c['photos']:>6} {c['read_right']:>8} {c['ensemble_alone']:>9}")
    right = sum(c["read_right"] for c in check.values())
    plain = sum(c["ensemble_alone"] for c in check.values())
    total = max(1, sum(c["photos"] for c in check.values()))
    lines.append(f"  {'all':<10} {total:>6} {right:>8} {plain:>9}   ({100 * right / total:.0f} % against "
                 f"{100 * plain / total:.0f} %)")
    if missed:
        lines.append(f"  no face found in {len(missed)} image(s), left out: {', '.join(missed[:3])}"
                     + (" ..." if len(missed) > 3 else ""))
    single = [name for name, c in check.items() if c["photos"] == 1]
    if single:
        lines.append(f"  one face only for {', '.join(single)}: enrol two or more of each for a better profile")
    return "\n".join(lines)

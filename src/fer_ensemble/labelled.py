"""Measure any model on a user's own labelled images: photos through the detector, or face crops.

The labels come as a ``file,label`` CSV. Photos go through the detector and the largest face is
classified; a photo without a face counts as wrong and is reported. With ``crops`` the images are
already faces (the classifier alone). ``group_by`` names columns (of the same CSV or of a second
one with a ``file`` column) whose values form a group, e.g. the frames of one video sequence: each
group then casts one vote (its mean probabilities), so near-duplicate frames do not inflate the
evidence. Torch-free.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fer_ensemble.constants import BLENDSHAPES, EMOTIONS
from fer_ensemble.errors import InputError, UserError
from fer_ensemble.media.images import read_image
from fer_ensemble.metrics import (
    ProbabilityFn,
    class_recalls,
    confusion_matrix,
    macro_recall,
    per_class_metrics,
)
from fer_ensemble.preprocess import to_gray

if TYPE_CHECKING:
    from fer_ensemble.runtime.detection import Box

LABEL_SYNONYMS = {
    "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "angry": "anger", "anger": "anger",
    "surprise": "surprise", "surprised": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "contempt": "contempt", "contemptuous": "contempt",
    "neutral": "neutral",
}
"""Common spellings of the eight emotions in other datasets' label files."""


class LabelsError(UserError):
    """A labels file that cannot be read as asked (one line for the user)."""


@dataclass
class LabelledImages:
    """Image paths, their class indices and (optionally) the group of each image. ``unreadable``:
    the images that could not be read (too large, damaged, no permission), each with its one-line
    reason, filled as the readers here meet them (``read_labelled``); they count as images without a
    face, and the run goes on."""

    paths: list[Path]
    labels: np.ndarray
    groups: list[str] | None = None
    unreadable: dict[Path, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def readable(self) -> np.ndarray:
        """(N,) bool: the images not (yet) found ``unreadable``."""
        return np.array([p not in self.unreadable for p in self.paths], bool)


def read_labelled(data: LabelledImages, path: Path, gray: bool = False) -> np.ndarray | None:
    """``read_image`` of one of ``data``'s images, or None when it cannot be read (an InputError),
    its reason recorded in ``data.unreadable``, so that one bad photo never stops an evaluation."""
    try:
        return read_image(path, gray=gray)
    except InputError as error:
        data.unreadable[path] = str(error)
        return None


def class_index(label: str) -> int:
    """The index in ``EMOTIONS`` of a label as users write it (any case; synonyms such as "happy" or
    "angry" accepted, ``LABEL_SYNONYMS``); LabelsError naming the classes for an unknown one."""
    name = LABEL_SYNONYMS.get(label.strip().lower())
    if name is None:
        raise LabelsError(f"unknown label {label!r}; use one of {', '.join(EMOTIONS)}")
    return EMOTIONS.index(name)


def read_csv_rows(path: Path, kind: str = "labels file") -> list[dict[str, str]]:
    """The rows of a CSV with a header holding a ``file`` column, as dicts. UTF-8 with or without
    the byte-order mark Excel writes ("CSV UTF-8"); LabelsError naming ``kind`` for a missing file, a
    folder, a file that is not text, a header without ``file`` or without rows."""
    if path.is_dir():
        raise LabelsError(f"{path}: a folder, not a {kind} (a CSV with file,label rows)")
    if not path.is_file():
        raise LabelsError(f"no {kind} {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error):
        raise LabelsError(f"{path}: not a text CSV file (a {kind} has file,label rows)") from None
    if "file" not in [name.strip() for name in header]:
        raise LabelsError(f"{path} needs a header with a 'file' column (it has {', '.join(header) or 'none'})")
    if not rows:
        raise LabelsError(f"{path}: a header but no rows")
    return [{key.strip(): value for key, value in row.items() if key is not None} for row in rows]


def read_labelled_images(labels_csv: str | Path, images: str | Path | None = None,
                         group_by: str | None = None, groups_csv: str | Path | None = None) -> LabelledImages:
    """Read ``file,label`` rows; files are relative to ``images`` (default: the CSV's folder).

    ``group_by`` is one column or several joined by commas (``subject,sequence``), looked up in
    ``groups_csv`` when given, else in the labels CSV itself.
    """
    labels_csv = Path(labels_csv)
    rows = read_csv_rows(labels_csv)
    if "label" not in rows[0]:
        raise LabelsError(f"{labels_csv} needs a 'label' column")
    root = Path(images) if images is not None else labels_csv.parent
    if not root.is_dir():
        raise LabelsError(f"no images folder {root}")
    paths = [root / row["file"] for row in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise LabelsError(f"{len(missing)} of {len(paths)} images not found, e.g. {missing[0]} "
                          "(pass the folder they are relative to as --images)")
    groups = None
    if group_by:
        columns = [c.strip() for c in group_by.split(",") if c.strip()]
        source = read_csv_rows(Path(groups_csv), "groups file") if groups_csv else rows
        absent = [c for c in columns if c not in source[0]]
        if absent:
            raise LabelsError(f"no column {absent[0]!r} in {groups_csv or labels_csv}")
        by_file = {row["file"]: "/".join(row[c] for c in columns) for row in source}
        ungrouped = [row["file"] for row in rows if row["file"] not in by_file]
        if ungrouped:
            raise LabelsError(f"{ungrouped[0]} has no row in {groups_csv}")
        groups = [by_file[row["file"]] for row in rows]
    return LabelledImages(paths, np.array([class_index(row["label"]) for row in rows], np.int64), groups)


@dataclass
class Scores:
    """Accuracy and per-class figures of one set of predictions (-1: no face found)."""

    n: int
    accuracy: float
    macro_recall: float  # ``fer_ensemble.metrics.macro_recall``: over the classes present, no face a miss
    no_face: int
    per_class: dict[str, dict[str, float]]  # recall, precision, support
    predicted_share: dict[str, float]  # of all predictions, "no face" included
    confusion: list[list[int]]  # true x predicted over the eight classes (no-face left out)


def score_predictions(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str] = EMOTIONS) -> Scores:
    """``Scores`` of (N,) int ``predictions`` (class indices into ``classes``; -1: no face found)
    against (N,) int ``labels``. Recall and macro recall are ``fer_ensemble.metrics``' (a missed face
    counts against its class's recall); precision is over the faces found."""
    found = predictions >= 0
    matrix = confusion_matrix(labels[found], predictions[found], len(classes))
    support = np.bincount(labels, minlength=len(classes))
    metrics = per_class_metrics(matrix)
    recalls = np.nan_to_num(class_recalls(labels, predictions, len(classes)))  # a missed face counts against recall
    per_class = {
        name: {"recall": float(recalls[i]), "precision": metrics[i].precision, "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    share = {name: float((predictions == i).mean()) for i, name in enumerate(classes)}
    share["no face"] = float((~found).mean())
    return Scores(
        n=int(len(labels)),
        accuracy=float((predictions == labels).mean()) if len(labels) else 0.0,
        macro_recall=macro_recall(labels, predictions, len(classes)),
        no_face=int((~found).sum()),
        per_class=per_class,
        predicted_share=share,
        confusion=matrix.tolist(),
    )


@dataclass
class LabelledReport:
    """Scores per image and, when the labels name groups (``--group-by``), per group: each group's
    vote, the mean probabilities of its found faces; ``n_groups`` 0 without groups."""

    per_image: Scores
    per_group: Scores | None = None
    n_groups: int = 0

    def to_dict(self) -> dict:
        """The report as plain values (what ``evaluate --json`` prints)."""
        return asdict(self)


def group_votes(labels: np.ndarray, probabilities: np.ndarray, found: np.ndarray,
                groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One (label, prediction) per group: the mean probabilities of the group's found faces."""
    keys = sorted(set(groups))
    index = {key: i for i, key in enumerate(keys)}
    members = np.array([index[g] for g in groups])
    group_labels = np.full(len(keys), -1, np.int64)
    group_predictions = np.full(len(keys), -1, np.int64)
    for g in range(len(keys)):
        mine = members == g
        values = np.unique(labels[mine])
        if len(values) != 1:
            raise LabelsError(f"group {keys[g]!r} mixes labels {[EMOTIONS[v] for v in values]}")
        group_labels[g] = values[0]
        if (mine & found).any():
            group_predictions[g] = int(probabilities[mine & found].mean(axis=0).argmax())
    return group_labels, group_predictions


def evaluate_labelled(probabilities: np.ndarray, found: np.ndarray, data: LabelledImages) -> LabelledReport:
    """Scores per image and, when the data has groups, per group."""
    predictions = np.where(found, probabilities.argmax(axis=1), -1)
    report = LabelledReport(score_predictions(data.labels, predictions))
    if data.groups is not None:
        group_labels, group_predictions = group_votes(data.labels, probabilities, found, data.groups)
        report.per_group = score_predictions(group_labels, group_predictions)
        report.n_groups = len(group_labels)
    return report


def crop_probabilities(predict_proba: ProbabilityFn, data: LabelledImages, batch_size: int = 256) -> np.ndarray:
    """``predict_proba`` of every image read whole as a gray face crop: (N, 8) float32, zeros for
    an image that cannot be read (``data.unreadable`` says which and why; ``data.readable()``)."""
    probabilities = np.zeros((len(data), len(EMOTIONS)), np.float32)
    for start in range(0, len(data), batch_size):
        crops = [(i, read_labelled(data, data.paths[i], gray=True))
                 for i in range(start, min(start + batch_size, len(data)))]
        if read := [(i, crop) for i, crop in crops if crop is not None]:
            probabilities[[i for i, _ in read]] = predict_proba([crop for _, crop in read])
    return probabilities


def largest_face_boxes(data: LabelledImages, detector) -> Iterator[tuple[np.ndarray | None, Box | None]]:
    """Each photo's gray copy and its largest face's box (``largest_face``; None where the detector
    found no face), in order; (None, None) for a photo that cannot be read (``read_labelled``)."""
    for _, gray, box in largest_face_photos(data, detector):
        yield gray, box


def largest_face_photos(data: LabelledImages, detector) -> Iterator[tuple[np.ndarray | None, np.ndarray | None,
                                                                          Box | None]]:
    """``largest_face_boxes`` with each photo itself first (as ``read_image`` gives it): (image,
    gray, box) per photo, in order; (None, None, None) for one that cannot be read."""
    from fer_ensemble.runtime.detection import largest_face

    for path in data.paths:
        image = read_labelled(data, path)
        if image is None:
            yield None, None, None
            continue
        gray = to_gray(image)
        yield image, gray, largest_face(detector, image, gray)


def largest_faces(data: LabelledImages, detector, margin: float, offset: float = 0.0) -> Iterator[np.ndarray | None]:
    """The crop of the largest face of each photo, in order: an (H, W) gray uint8 array framed as
    the apps frame faces (``margin``, ``offset``), or None where the detector found no face."""
    from fer_ensemble.runtime.detection import crop_faces

    for gray, box in largest_face_boxes(data, detector):
        yield None if box is None or gray is None else crop_faces(gray, [box], margin, offset)[0]


PHOTO_BATCH = 32
"""Photos whose faces go through the models in one batch (the same answers as one by one, faster)."""


def batched(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def photo_probabilities(predict_proba: ProbabilityFn, data: LabelledImages, detector, margin: float,
                        offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``predict_proba`` of the largest face of each photo: (N, 8) float32 probabilities (zeros
    where no face was found) and the (N,) bool mask of photos with a face."""
    probabilities = np.zeros((len(data), len(EMOTIONS)), np.float32)
    found = np.zeros(len(data), bool)
    for chunk in batched(enumerate(largest_faces(data, detector, margin, offset)), PHOTO_BATCH):
        with_face = [(i, crop) for i, crop in chunk if crop is not None]
        if with_face:
            rows = [i for i, _ in with_face]
            probabilities[rows] = predict_proba([crop for _, crop in with_face])
            found[rows] = True
    return probabilities, found


class FaceOutputs(NamedTuple):
    """What ``face_outputs`` reads of N labelled images: (N, C) native probabilities of each face's
    first framing, (N, F, D) embeddings of its F framings (zeros where no face was found), the (N,)
    bool mask of images with a face, and, when asked for, the (N, 51) blendshapes of each face
    (``BLENDSHAPES`` order; NaN rows where none were read), else None."""

    native: np.ndarray
    embeddings: np.ndarray
    found: np.ndarray
    blendshapes: np.ndarray | None = None


def face_outputs(read_faces, data: LabelledImages, detector=None, margin: float = 0.0, offset: float = 0.0,
                 framings: Sequence[tuple[float, float]] = ((0.0, 0.0),), geometry=None) -> FaceOutputs:
    """``read_faces`` (``Ensemble.read_faces``) of each image's face: the image itself with no
    ``detector`` (face crops, one framing), else its largest face cropped at each of ``framings``
    ((margin, offset) added to ``margin`` and ``offset``; the first is the answer's); with a
    ``geometry`` reader (``GeometryReader``) and a ``detector``, each face's blendshapes too (read
    on the detector's box in the photo, as ``predict --geometry`` reads them)."""
    from fer_ensemble.runtime.detection import crop_faces
    from fer_ensemble.runtime.profile import blendshape_rows

    framings = framings if detector is not None else framings[:1]
    shapes = np.full((len(data), len(BLENDSHAPES)), np.nan, np.float32) if geometry is not None and detector is not None else None

    def photo_crops() -> Iterator[list[np.ndarray] | None]:
        for i, (image, gray, box) in enumerate(largest_face_photos(data, detector)):
            if box is None or gray is None:
                yield None
                continue
            if shapes is not None:
                shapes[i] = blendshape_rows(geometry.read(image, [box]))[0]
            yield [crop_faces(gray, [box], margin + dm, offset + do)[0] for dm, do in framings]

    faces = ((None if (crop := read_labelled(data, p, gray=True)) is None else [crop] for p in data.paths)
             if detector is None else photo_crops())
    native, embeddings, found = [], [], np.zeros(len(data), bool)
    for chunk in batched(enumerate(faces), PHOTO_BATCH):
        with_face = [(i, crops) for i, crops in chunk if crops is not None]
        if not with_face:
            continue
        probabilities, embedding = read_faces([crop for _, crops in with_face for crop in crops])
        if embedding is None:  # asked for none, or the members give none
            embedding = np.zeros((len(probabilities), 0), np.float32)
        per_face = len(with_face[0][1])
        native += list(probabilities[::per_face])
        embeddings += [embedding[k * per_face:(k + 1) * per_face] for k in range(len(with_face))]
        found[[i for i, _ in with_face]] = True
    all_native = np.zeros((len(data), len(EMOTIONS)), np.float32)
    all_embeddings = np.zeros((len(data), len(framings), embeddings[0].shape[1] if embeddings else 0), np.float32)
    if embeddings:
        all_native[found], all_embeddings[found] = native, embeddings
    return FaceOutputs(all_native, all_embeddings, found, shapes)


def evaluate_crops(predict_proba: ProbabilityFn, data: LabelledImages, batch_size: int = 256) -> LabelledReport:
    """The classifier alone: every image is a face crop."""
    return evaluate_labelled(crop_probabilities(predict_proba, data, batch_size), data.readable(), data)


def evaluate_photos(predict_proba: ProbabilityFn, data: LabelledImages, detector, margin: float,
                    offset: float = 0.0) -> LabelledReport:
    """Detector, then the largest face of each photo; photos without a face count as wrong."""
    return evaluate_labelled(*photo_probabilities(predict_proba, data, detector, margin, offset), data)

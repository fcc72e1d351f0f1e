"""Classification metrics for the FER+ protocol, and face-detection counts against labelled boxes
(NumPy only)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fer_ensemble.constants import CONTEMPT_INDEX, EMOTIONS
from fer_ensemble.outputs import written_whole

ProbabilityFn = Callable[[Sequence[np.ndarray] | np.ndarray], np.ndarray]
"""A classifier's ``predict_proba``: N face crops (each an (H, W) gray or (H, W, 3) BGR uint8 array,
or an (N, H, W) array) -> (N, C) float32 probabilities."""

@dataclass
class ClassMetrics:
    """One class's precision, recall and F1 (in [0, 1]; 0.0 where undefined) and its support (images)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvaluationReport:
    """What ``evaluate`` reports for one model on one split (majority labels)."""

    n_images: int
    accuracy: float
    macro_f1: float
    macro_recall: float  # ``macro_recall``: mean recall over the classes present in the labels
    accuracy_7class: float
    macro_recall_7class: float
    n_images_7class: int
    ece: float
    nll: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]  # rows: true class, columns: predicted class

    def to_dict(self) -> dict:
        """The report as plain values (what ``evaluate --json`` prints)."""
        return asdict(self)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray) -> list[ClassMetrics]:
    """Precision, recall and F1 of every class from a confusion matrix (0 where undefined)."""
    true_pos = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return [
        ClassMetrics(float(p), float(r), float(f), int(s))
        for p, r, f, s in zip(precision, recall, f1, actual)
    ]


def class_recalls(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) float64 recall of each class: the share of the images labelled with it that were
    predicted as it. ``labels`` and ``predictions`` are (N,) class indices in ``[0, num_classes)``;
    a prediction of -1 (no face found) is a miss. NaN for a class with no labelled image."""
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    support = np.bincount(labels, minlength=num_classes).astype(float)
    hits = np.bincount(labels[predictions == labels], minlength=num_classes).astype(float)
    return np.divide(hits, support, out=np.full(num_classes, np.nan), where=support > 0)


def macro_recall(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """The one definition of macro recall every report uses (``EvaluationReport``,
    ``fer_ensemble.labelled.Scores``): the unweighted mean of ``class_recalls`` over the classes
    present in ``labels`` (balanced accuracy; a class with no labelled image is left out, not
    counted as 0); a no-face prediction (-1) is a miss. 0.0 for no labels."""
    recalls = class_recalls(labels, predictions, num_classes)
    present = ~np.isnan(recalls)
    return float(recalls[present].mean()) if present.any() else 0.0


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), probabilities clipped at 1e-12 (0 for no images)."""
    if len(labels) == 0:
        return 0.0
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def seven_class_view(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop contempt images and fold the contempt probability out (the seed's seven emotions)."""
    keep = labels != CONTEMPT_INDEX
    probs = np.delete(probabilities[keep], CONTEMPT_INDEX, axis=1)
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    seven_labels = labels[keep]
    seven_labels = np.where(seven_labels > CONTEMPT_INDEX, seven_labels - 1, seven_labels)
    return probs, seven_labels


def evaluate_probabilities(
    probabilities: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...] = EMOTIONS
) -> EvaluationReport:
    """Every figure of the report from class probabilities (N, C) and true labels (N,)."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, num_classes)
    per_class = per_class_metrics(matrix)
    seven_probs, seven_labels = seven_class_view(probabilities, labels)
    return EvaluationReport(
        n_images=int(len(labels)),
        accuracy=float((predictions == labels).mean()) if len(labels) else 0.0,
        macro_f1=float(np.mean([m.f1 for m in per_class])),
        macro_recall=macro_recall(labels, predictions, num_classes),
        accuracy_7class=float((seven_probs.argmax(axis=1) == seven_labels).mean())
        if len(seven_labels)
        else 0.0,
        macro_recall_7class=macro_recall(seven_labels, seven_probs.argmax(axis=1), num_classes - 1),
        n_images_7class=int(len(seven_labels)),
        ece=expected_calibration_error(probabilities, labels),
        nll=negative_log_likelihood(probabilities, labels),
        per_class=dict(zip(class_names, per_class)),
        confusion=matrix.tolist(),
    )


def plot_confusion(matrix: np.ndarray | list, path: str, title: str, class_names=EMOTIONS,
                   true_label: str = "true (majority vote)") -> None:
    """Save a row-normalised (C, C) confusion matrix (rows: true class, columns: predicted) with
    counts as a PNG; ``title`` is wrapped to the figure's width (needs matplotlib)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    normalised = matrix / rows
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            color = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{normalised[i, j]:.2f}\n{matrix[i, j]}", ha="center", va="center",
                    fontsize=7, color=color)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel(true_label)
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    fig.tight_layout()
    written_whole(path, lambda partial: fig.savefig(partial, dpi=120))  # whole or not at all
    plt.close(fig)


MAX_SCALE = 2.0
"""A detection counts as a labelled face when its centre lies inside the labelled box and its size
(the square root of its area) is within a factor ``MAX_SCALE`` of the label's. Not an IoU threshold:
detectors frame faces differently (Haar's square from brow to chin, SSD's taller box, BlazeFace's
whole head at about 1.6 times the side, IoU 0.35-0.5 with a correct face), while a box on a
shoulder or a belt has its centre outside every face."""


def _match_distance(found, labelled) -> float | None:
    """How far ``found``'s centre is from ``labelled``'s, in label sides; None when it is no match."""
    fx, fy, fw, fh = found
    lx, ly, lw, lh = labelled
    cx, cy = fx + fw / 2, fy + fh / 2
    if not (lx <= cx <= lx + lw and ly <= cy <= ly + lh):
        return None
    ratio = ((fw * fh) / max(lw * lh, 1)) ** 0.5
    if not 1 / MAX_SCALE <= ratio <= MAX_SCALE:
        return None
    return ((cx - lx - lw / 2) ** 2 + (cy - ly - lh / 2) ** 2) ** 0.5 / max(lw, lh)


@dataclass
class DetectionCounts:
    """Detections matched one to one with labelled faces."""

    true_positives: int = 0
    misses: int = 0
    false_positives: int = 0
    missed: list = field(default_factory=list)  # the labelled boxes no detection matched

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.true_positives + other.true_positives, self.misses + other.misses,
                               self.false_positives + other.false_positives, self.missed + other.missed)

    def to_dict(self) -> dict:
        """The three counts by name."""
        return {"true_positives": self.true_positives, "misses": self.misses,
                "false_positives": self.false_positives}


def match_faces(found, labelled) -> DetectionCounts:
    """True positives, misses and false positives of ``found`` boxes against ``labelled`` ones
    (``MAX_SCALE`` says what matches; one to one, nearest centres first)."""
    pairs = sorted((distance, i, j) for i, f in enumerate(found) for j, t in enumerate(labelled)
                   if (distance := _match_distance(f, t)) is not None)
    used_found, used_truth = set(), set()
    for _, i, j in pairs:
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    missed = [tuple(labelled[j]) for j in range(len(labelled)) if j not in used_truth]
    return DetectionCounts(len(used_truth), len(missed), len(found) - len(used_found), missed)


def read_face_boxes(path: str | Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """``file,x,y,w,h[,...]`` rows (one per labelled face) as {file: [boxes]}."""
    boxes: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["file"], []).append(tuple(int(row[k]) for k in "xywh"))
    return boxes

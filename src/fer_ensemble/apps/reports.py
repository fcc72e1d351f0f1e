"""The tables ``evaluate`` and ``adapt`` print in the terminal, made from the library's report
dataclasses (``metrics.EvaluationReport``, ``labelled.LabelledReport`` and ``labelled.Scores``)."""

from __future__ import annotations

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.labelled import LabelledReport, Scores
from fer_ensemble.metrics import EvaluationReport


def format_report(name: str, split: str, report: EvaluationReport) -> str:
    """The FER+ protocol's table a user reads in the terminal: the headline metrics, then per class."""
    lines = [
        f"{name} on FER+ {split} ({report.n_images} images, official majority protocol)",
        f"  accuracy {report.accuracy:.4f}   macro recall {report.macro_recall:.4f}   macro-F1 {report.macro_f1:.4f}   "
        f"7-class accuracy {report.accuracy_7class:.4f} ({report.n_images_7class} images)   "
        f"ECE {report.ece:.4f}   NLL {report.nll:.4f}",
        f"  {'class':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}",
    ]
    for emotion in EMOTIONS:
        m = report.per_class[emotion]
        lines.append(f"  {emotion:<10} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} {m.support:>8d}")
    return "\n".join(lines)


def format_labelled_report(name: str, source: str, report: LabelledReport) -> str:
    """The per-image (and per-group) table a user reads in the terminal."""
    views = [("image", report.per_image)]
    if report.per_group is not None:
        views.append(("group", report.per_group))
    lines = [f"{name} on {source}"]
    for view, scores in views:
        lines.append(f"  per {view}: {scores.n} {view}s, accuracy {scores.accuracy:.4f}, macro recall "
                     f"{scores.macro_recall:.4f}" + (f", no face in {scores.no_face}" if scores.no_face else ""))
    header = "".join(f" {view + 's':>7} {'recall':>7}" for view, _ in views)
    lines.append(f"  {'class':<10}{header} {'precision':>10} {'predicted':>10}")
    first = report.per_image
    for emotion in EMOTIONS:
        cells = "".join(f" {s.per_class[emotion]['support']:>7d} " + (
            f"{s.per_class[emotion]['recall']:>7.3f}" if s.per_class[emotion]["support"] else f"{'-':>7}")
            for _, s in views)  # no images of a class: no recall, not 0.000
        precision = (f"{first.per_class[emotion]['precision']:>10.3f}" if first.predicted_share[emotion]
                     else f"{'-':>10}")  # never predicted: no precision
        lines.append(f"  {emotion:<10}{cells} {precision} {first.predicted_share[emotion]:>10.1%}")
    if first.no_face:
        lines.append(f"  {'no face':<10}" + " " * (16 * len(views)) +
                     f" {'':>10} {first.predicted_share['no face']:>10.1%}")
    return "\n".join(lines)


def format_before_after(heading: str, before: Scores, after: Scores, unit: str = "images",
                        *more: tuple[str, Scores]) -> list[str]:
    """The lines of a before/after table (a calibration's, a resting face's): accuracy, macro recall
    and the recall of every class with labels, in percent; ``more``: further (title, scores) columns
    after "after" (the same images read another way)."""
    columns = [("before", before), ("after", after), *more]
    widths = [max(8, len(title) + 1) for title, _ in columns]

    def row(name: str, values: list[float], tail: str = "") -> str:
        return f"  {name:<14}" + "".join(f"{100 * v:>{w - 1}.1f}%" for v, w in zip(values, widths)) + tail

    lines = [heading, f"  {'':<14}" + "".join(f"{title:>{w}}" for (title, _), w in zip(columns, widths)),
             row("accuracy", [s.accuracy for _, s in columns]),
             row("macro recall", [s.macro_recall for _, s in columns])]
    for emotion in EMOTIONS:
        if before.per_class[emotion]["support"]:
            lines.append(row(emotion, [s.per_class[emotion]["recall"] for _, s in columns],
                             f"   ({before.per_class[emotion]['support']} {unit})"))
    return lines

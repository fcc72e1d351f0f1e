"""Tables and a plot from the runners' result files: accuracy on FER+ Test (seven-class view), on
CK+48's posed faces (per image and per sequence, when run.sh was given it), on taiwan-posed's whole
photos (end to end and on our detector's boxes, when run.sh was given it) and speed."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import date
from pathlib import Path

import numpy as np
from harness import CLASSES, HERE

from fer_ensemble.metrics import MAX_SCALE, DetectionCounts, match_faces, read_face_boxes

ORDER = ["ours-ensemble", "ours-ensemble-ferplus", "ours-resnet50", "ours-mobilenet_v2", "fer-model", "fer-detect_emotions",
         "face-api", "human"]
SHORT = {"ours-ensemble": "ours: ensemble", "ours-ensemble-ferplus": "ours: ensemble, ferplus prior", "ours-resnet50": "ours: ResNet50", "ours-mobilenet_v2": "ours: MobileNetV2",
         "fer-model": "fer: model", "fer-detect_emotions": "fer: detect_emotions", "face-api": "face-api",
         "human": "Human"}
NOT_OFFLINE = [
    ("deepface", "downloads its emotion model (facial_expression_model_weights.h5) from GitHub at first use"),
    ("hsemotion-onnx", "downloads its ONNX models from GitHub at first use"),
    ("emotiefflib", "downloads its models from GitHub at first use"),
]


def cpu_name() -> str:
    """The CPU's model name (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.machine()


def load_results(work: Path) -> list[dict]:
    found = {p.stem: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    return [found[k] for k in ORDER if k in found] + [v for k, v in sorted(found.items()) if k not in ORDER]


def accuracy_row(result: dict, labels: np.ndarray) -> dict:
    predictions = np.asarray(result["probs"]).argmax(axis=1)
    recalls = [float((predictions[labels == c] == c).mean()) for c in range(len(CLASSES))]
    return {"accuracy": float((predictions == labels).mean()), "macro_recall": float(np.mean(recalls)),
            "recall": recalls}


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def with_probabilities(results: list[dict]) -> list[dict]:
    """The systems that classified the crops (a detector-only row has no accuracy of its own)."""
    return [r for r in results if "probs" in r]


def accuracy_table(results: list[dict], labels: np.ndarray) -> str:
    head = "| system | input | accuracy % | macro recall % | " + " | ".join(CLASSES) + " |"
    lines = [head, "|" + "---|" * (4 + len(CLASSES))]
    for r in with_probabilities(results):
        row = accuracy_row(r, labels)
        lines.append(f"| {r['system']} | {r['input']} | **{pct(row['accuracy'])}** | {pct(row['macro_recall'])} | "
                     + " | ".join(pct(v) for v in row["recall"]) + " |")
    for name, why in NOT_OFFLINE:
        lines.append(f"| {name} | - | not measurable offline: {why} |" + " |" * (1 + len(CLASSES)))
    return "\n".join(lines)


def sequence_votes(probs: np.ndarray, labels: np.ndarray, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One prediction per sequence: the arg-max of its frames' mean probabilities."""
    keys = sorted(set(groups))
    index = np.array([keys.index(g) for g in groups])
    votes = np.array([probs[index == k].mean(axis=0).argmax() for k in range(len(keys))])
    truth = np.array([labels[index == k][0] for k in range(len(keys))])
    return votes, truth


def posed_scores(predictions: np.ndarray, labels: np.ndarray) -> dict:
    present = sorted(set(labels.tolist()))
    recalls = {CLASSES[c]: float((predictions[labels == c] == c).mean()) for c in present}
    return {"accuracy": float((predictions == labels).mean()), "macro_recall": float(np.mean(list(recalls.values()))),
            "neutral": float((predictions == CLASSES.index("neutral")).mean()), "recall": recalls}


def ckplus_table(results: list[dict], meta: dict) -> str:
    labels = np.asarray(meta["labels"])
    present = [CLASSES[c] for c in sorted(set(labels.tolist()))]
    lines = ["| system | accuracy % per image / sequence | macro recall % per image / sequence | "
             "called neutral % (sequences) | " + " | ".join(present) + " (sequences) |",
             "|" + "---|" * (4 + len(present))]
    for r in with_probabilities(results):
        probs = np.asarray(r["probs"])
        image = posed_scores(probs.argmax(axis=1), labels)
        votes, truth = sequence_votes(probs, labels, meta["groups"])
        seq = posed_scores(votes, truth)
        lines.append(f"| {r['system']} | **{pct(image['accuracy'])}** / **{pct(seq['accuracy'])}** | "
                     f"{pct(image['macro_recall'])} / {pct(seq['macro_recall'])} | {pct(seq['neutral'])} | "
                     + " | ".join(pct(seq["recall"][c]) for c in present) + " |")
    return "\n".join(lines)


TAIWAN_SHORT = {"ours-ensemble": "ours (EmotionRecognizer())", "fer-detect_emotions": "fer", "face-api": "face-api",
                "human": "Human"}


def photo_scores(rows: list, labels: np.ndarray) -> dict:
    """Accuracy, macro recall and per-class recall over the classes present, one row per photo: a
    photo without a face (None) counts as wrong."""
    predictions = np.array([-1 if r is None else int(np.argmax(r)) for r in rows])
    recalls = {CLASSES[c]: float((predictions[labels == c] == c).mean()) for c in sorted(set(labels.tolist()))}
    return {"accuracy": float((predictions == labels).mean()), "macro_recall": float(np.mean(list(recalls.values()))),
            "recall": recalls, "no_face": int((predictions < 0).sum())}


def taiwan_table(results: list[dict], photos: list[dict]) -> str:
    labels = np.array([p["label"] for p in photos])
    present = [CLASSES[c] for c in sorted(set(labels.tolist()))]
    lines = ["| system | accuracy % | macro recall % | " + " | ".join(present) + " | no face |",
             "|" + "---|" * (4 + len(present))]
    for way, field in (("end to end", "photo_probs"), ("on our boxes", "our_box_probs")):
        for r in results:
            row = photo_scores(r[field], labels)
            lines.append(f"| {TAIWAN_SHORT.get(r['key'], r['key'])}, {way} | **{pct(row['accuracy'])}** | "
                         f"{pct(row['macro_recall'])} | " + " | ".join(pct(row["recall"][c]) for c in present)
                         + f" | {row['no_face']} |")
    return "\n".join(lines)


def _ms(result: dict, threads: int) -> str:
    value = result.get(f"ms_per_face_{threads}t")
    return f"{value:.2f}" if value is not None else "-"


def _fps(result: dict, threads: int) -> str:
    e2e = result.get(f"end_to_end_{threads}t")
    return f"{e2e['fps']:.2f}" if e2e else "-"


LABELLED_FACES = HERE.parent / "group-photo-faces.csv"  # hand-labelled boxes of the group photos


def detection_counts(e2e: dict) -> DetectionCounts:
    """A system's boxes on the group photos against the hand-labelled faces."""
    labelled = read_face_boxes(LABELLED_FACES)
    total = DetectionCounts()
    for file, boxes in e2e["boxes"].items():
        total = total + match_faces(boxes, labelled.get(file, []))
    return total


def speed_table(results: list[dict]) -> str:
    lines = ["| system | package | ms/face, 1 thread | ms/face, 2 threads | detector | "
             "fps end to end, 1 thread | fps, 2 threads | faces found / missed / false positives |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        e2e = r.get("end_to_end_1t")
        detector = r.get("detector", "-") if e2e else "-"
        found = "-"
        if e2e:
            counts = detection_counts(e2e)
            found = f"{counts.true_positives} / {counts.misses} / {counts.false_positives}"
        lines.append(f"| {r['system']} | {r['package']} | {_ms(r, 1)} | {_ms(r, 2)} | {detector} | "
                     f"{_fps(r, 1)} | {_fps(r, 2)} | {found} |")
    return "\n".join(lines)


def plot(results: list[dict], labels: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    results = with_probabilities(results)
    for r in results:
        acc = 100 * accuracy_row(r, labels)["accuracy"]
        ours = r["key"].startswith("ours")
        ax.scatter(r["ms_per_face_1t"], acc, s=70, marker="o" if ours else "s",
                   color="tab:blue" if ours else "tab:gray", zorder=3)
        ax.annotate(SHORT.get(r["key"], r["key"]), (r["ms_per_face_1t"], acc), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    times = [r["ms_per_face_1t"] for r in results]
    ax.set_xscale("log")
    ax.set_xlim(min(times) / 2, max(times) * 4)
    ax.set_xlabel("ms per face, batch 1, one thread (log scale)")
    ax.set_ylabel("FER+ Test accuracy, 7 classes (%)")
    ax.set_title("Accuracy vs speed on the same faces (up and left is better)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)


def taiwan_section(taiwan: Path) -> str:
    """taiwan-posed's table, when its results are there (else nothing)."""
    if not (taiwan / "results").is_dir():
        return ""
    photos = json.loads((taiwan / "taiwan.json").read_text())
    counts = {c: sum(p["label"] == CLASSES.index(c) for p in photos) for c in CLASSES}
    return "\n\n".join(["", (
        f"taiwan-posed (real photos, {len(photos)} whole 256 px photos of "
        f"{len({p['performer'] for p in photos})} performers posing; "
        + ", ".join(f"{c} {n}" for c, n in counts.items() if n) + "): the largest face of each photo, "
        "a photo without a face counted wrong. End to end: each system with its own detector. On our "
        "boxes: each classifier given the box of our default detector's largest face (each with its own "
        "framing of a given box), so that only the classifiers differ. Recall % per class."),
        taiwan_table(load_results(taiwan), photos)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", required=True)
    parser.add_argument("--plot", help="where to write the accuracy-vs-speed plot (PNG)")
    args = parser.parse_args()
    work = Path(args.work)
    if (work / "taiwan.json").exists():  # a taiwan-posed work folder alone
        print(taiwan_section(work).strip())
        return
    meta = json.loads((work / "faces.json").read_text())
    labels = np.asarray(meta["labels"])
    results = load_results(work)
    photos = json.loads((work / "photos.json").read_text())
    text = "\n\n".join([
        f"Machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores available, {date.today()}. "
        f"FER+ Test, official majority protocol, seven-class view: "
        f"{meta['n']} of {meta['n_test_majority']} images (contempt left out).",
        accuracy_table(results, labels),
        f"Speed: one face at a time (batch 1), median over the first faces; end to end: decoded RGB frame in, "
        f"every face with its emotions out, over {len(photos)} group photos "
        f"({sum(p['faces'] for p in photos)} faces, {photos[0]['width']} px wide); each system's boxes "
        f"matched one to one with the hand-labelled faces of benchmarks/{LABELLED_FACES.name} "
        f"(a match: the box's centre inside the labelled face, its size within {MAX_SCALE:g}x of the "
        "label's, whatever each detector's framing).",
        speed_table(results),
    ])
    posed = work / "ckplus48"
    if (posed / "results").is_dir():
        posed_meta = json.loads((posed / "faces.json").read_text())
        n_sequences = len(set(posed_meta["groups"]))
        text += "\n\n".join(["", (
            f"CK+48 (posed expressions, 48 px crops; no neutral faces), seven-class view: {posed_meta['n']} "
            f"images of {n_sequences} sequences (contempt left out); one vote per sequence = the mean "
            f"probabilities of its frames."), ckplus_table(load_results(posed), posed_meta)])
    text += taiwan_section(work / "taiwan")
    (work / "report.md").write_text(text + "\n")
    print(text)
    if args.plot:
        plot(results, labels, Path(args.plot))
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

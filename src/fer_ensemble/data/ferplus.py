"""FER+ reader (torch-free): Microsoft's folder layout or the fer2013.csv + fer2013new.csv pair.

The label arithmetic is a port of ``_process_data`` / ``_process_target`` in Microsoft's FER+
code (``ferplus.py``): single votes are dropped as outliers, then each label mode keeps the votes
it trusts; images whose processed label is 'unknown' or 'not a face' are left out. Validation and
test are always scored against the majority label.
"""

from __future__ import annotations

import csv
import hashlib
import io
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.constants import EMOTIONS, VOTE_COLUMNS
from fer_ensemble.errors import UserError
from fer_ensemble.outputs import written_whole

LABEL_MODES: tuple[str, ...] = ("majority", "probability", "crossentropy", "multi_target")
"""How FER+'s ten votes become training targets (Barsoum et al. 2016, section 3: majority,
probability, cross-entropy, multi-target)."""
SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""FER+'s splits, by this package's names."""
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
"""Each split's folder in Microsoft's layout (``../shared/README.md``)."""
CSV_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
"""Each split's ``Usage`` value in FER2013's ``fer2013.csv``."""
IMAGE_SIZE = 48
"""FER2013's images: 48x48 gray pixels."""
CACHE_VERSION = 1
"""Bumped when the decoded-split cache's layout changes, so an old cache is rebuilt."""
PACK_SUFFIX = ".npz.xz"
"""The name ending ``pack_splits`` requires (an lzma-compressed ``.npz``)."""

_UNKNOWN = VOTE_COLUMNS.index("unknown")
_NUM_EMOTIONS = len(EMOTIONS)


def process_votes(votes: np.ndarray | list[float], mode: str) -> np.ndarray:
    """Turn one row of ten vote counts into the label distribution of Microsoft's FER+ code.

    Returns ten probabilities; an image that the mode rejects gets all its mass on 'unknown'.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; choose from {LABEL_MODES}")
    raw = np.asarray(votes, dtype=np.float64).copy()
    unknown = np.zeros_like(raw)
    unknown[_UNKNOWN] = 1.0
    raw[raw <= 1.0] = 0.0  # single votes are outliers
    total = raw.sum()
    if total <= 0:
        return unknown
    label = np.zeros_like(raw)

    if mode == "majority":
        peak = raw.max()
        if peak <= 0.5 * total:
            return unknown
        label[int(np.argmax(raw))] = peak
    elif mode in ("probability", "crossentropy"):
        # take the strongest classes (ties together) until 75 % of the votes or 3 classes
        taken, count, valid = 0.0, 0, True
        while taken < 0.75 * total and count < 3 and valid:
            peak = raw.max()
            for i in range(len(raw)):
                if raw[i] == peak:
                    label[i] = peak
                    raw[i] = 0.0
                    taken += label[i]
                    count += 1
                    if i >= _NUM_EMOTIONS:  # 'unknown' or 'not a face' among the top classes
                        valid = False
                        if label.sum() > peak:  # other emotions came before it: drop it
                            label[i] = 0.0
                            count -= 1
                        break
        if label.sum() <= 0.5 * total or count > 3:
            return unknown
    else:  # multi_target: every class with at least 30 % of the votes
        keep = raw >= 0.3 * total
        label[keep] = raw[keep]
        if label.sum() <= 0.5 * total:
            return unknown
    return label / label.sum()


@dataclass
class LabelledSplit:
    """The images of one split that a label mode keeps, with their 8-emotion targets."""

    split: str
    mode: str
    names: np.ndarray  # (N,) str
    images: np.ndarray  # (N, 48, 48) uint8
    targets: np.ndarray  # (N, 8) float32, rows sum to 1
    votes: np.ndarray  # (N, 10) raw vote counts

    @property
    def labels(self) -> np.ndarray:
        """The arg-max emotion of each target (the majority label in majority mode)."""
        return self.targets.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.names)

    def head(self, n: int | None) -> LabelledSplit:
        """The first ``n`` images (all when ``n`` is None), for smoke runs."""
        if n is None:
            return self
        return LabelledSplit(
            self.split, self.mode, self.names[:n], self.images[:n], self.targets[:n], self.votes[:n]
        )


@dataclass
class FerPlusSplit:
    """Every image of one FER+ split with its ten raw vote counts."""

    split: str
    names: np.ndarray  # (N,) str
    images: np.ndarray  # (N, 48, 48) uint8
    votes: np.ndarray  # (N, 10) int16

    def labelled(self, mode: str = "majority") -> LabelledSplit:
        """Keep the images whose processed label is an emotion, with targets over the 8 emotions."""
        processed = np.array([process_votes(v, mode) for v in self.votes]).reshape(-1, len(VOTE_COLUMNS))
        keep = processed.argmax(axis=1) < _NUM_EMOTIONS
        targets = processed[keep, :_NUM_EMOTIONS]
        targets = (targets / targets.sum(axis=1, keepdims=True)).astype(np.float32)
        return LabelledSplit(
            self.split, mode, self.names[keep], self.images[keep], targets, self.votes[keep]
        )


def default_cache_dir() -> Path:
    """Where decoded splits are cached: ``$FER_ENSEMBLE_CACHE`` or ``~/.cache/fer-ensemble``."""
    return Path(os.environ.get("FER_ENSEMBLE_CACHE", Path.home() / ".cache" / "fer-ensemble"))


def detect_layout(root: str | Path) -> str:
    """'folders' for Microsoft's layout, 'csv' for fer2013.csv + fer2013new.csv, 'pack' for a
    file written by ``pack_splits``."""
    root = Path(root)
    if root.is_file() and root.name.endswith(PACK_SUFFIX):
        return "pack"
    if all((root / folder / "label.csv").is_file() for folder in SPLIT_FOLDERS.values()):
        return "folders"
    if (root / "fer2013.csv").is_file() and (root / "fer2013new.csv").is_file():
        return "csv"
    raise UserError(
        f"{root} holds neither FER2013Train|Valid|Test/label.csv nor fer2013.csv + fer2013new.csv"
    )


def load_split(root: str | Path, split: str, cache_dir: str | Path | None = None) -> FerPlusSplit:
    """Read one split, decoding its images once into a cached uint8 array."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    root = Path(root).resolve()
    layout = detect_layout(root)
    if layout == "pack":
        return _read_pack(root, split)
    sources = (
        [root / SPLIT_FOLDERS[split] / "label.csv"]
        if layout == "folders"
        else [root / "fer2013.csv", root / "fer2013new.csv"]
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"ferplus-{split}-{_cache_key(sources)}.npz"
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as data:
            return FerPlusSplit(split, data["names"], data["images"], data["votes"])
    reader = _read_folders if layout == "folders" else _read_csv_pair
    names, images, votes = reader(root, split)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, names=names, images=images, votes=votes)
    tmp.replace(cache_file)
    return FerPlusSplit(split, names, images, votes)


def load_labelled(
    root: str | Path, split: str, mode: str = "majority", cache_dir: str | Path | None = None
) -> LabelledSplit:
    """Shortcut for ``load_split(root, split).labelled(mode)``."""
    return load_split(root, split, cache_dir).labelled(mode)


def _cache_key(sources: list[Path]) -> str:
    digest = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for path in sources:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _read_folders(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / SPLIT_FOLDERS[split]
    names, votes = [], []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            names.append(row[0])
            votes.append([int(v) for v in row[2 : 2 + len(VOTE_COLUMNS)]])
    images = np.empty((len(names), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, name in enumerate(names):
        image = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise UserError(f"cannot decode {folder / name}")
        if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
            image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        images[i] = image
    return np.array(names), images, np.array(votes, np.int16).reshape(-1, len(VOTE_COLUMNS))


def _read_csv_pair(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of fer2013.csv and fer2013new.csv correspond one to one; FER+ drops rows it left unnamed."""
    usage = CSV_USAGE[split]
    names, images, votes = [], [], []
    with open(root / "fer2013.csv", newline="") as f_pixels, open(
        root / "fer2013new.csv", newline=""
    ) as f_votes:
        pixel_rows, vote_rows = csv.DictReader(f_pixels), csv.DictReader(f_votes)
        for line, (pixels, vote) in enumerate(zip(pixel_rows, vote_rows, strict=True), start=2):
            if pixels["Usage"] != vote["Usage"]:
                raise UserError(f"fer2013.csv and fer2013new.csv disagree on Usage at line {line}")
            if vote["Usage"] != usage or not vote["Image name"].strip():
                continue
            names.append(vote["Image name"].strip())
            images.append(np.array(pixels["pixels"].split(), np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            votes.append([int(vote[c]) for c in VOTE_COLUMNS])
    stacked = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return np.array(names), stacked, np.array(votes, np.int16).reshape(-1, len(VOTE_COLUMNS))


def pack_splits(root: str | Path, out: str | Path, splits: tuple[str, ...] = SPLITS) -> Path:
    """Decoded splits in one lzma-compressed file (train + valid: ~57 MB), for machines that get
    the repository but not the dataset, such as a lent GPU; ``load_split(pack, split)`` reads it."""
    out = Path(out)
    if not out.name.endswith(PACK_SUFFIX):
        raise UserError(f"the pack's name must end in {PACK_SUFFIX}")
    arrays = {}
    for split in splits:
        data = load_split(root, split)
        arrays.update({f"{split}_names": data.names, f"{split}_images": data.images, f"{split}_votes": data.votes})
    buffer = io.BytesIO()
    # numpy's stubs: mypy matches **arrays against savez's allow_pickle: bool as well as **kwds
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    written_whole(out, lambda partial: partial.write_bytes(lzma.compress(buffer.getvalue(), preset=6)))
    return out


def _read_pack(path: Path, split: str) -> FerPlusSplit:
    with np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False) as data:
        if f"{split}_images" not in data:
            raise UserError(f"{path} holds no {split} split")
        return FerPlusSplit(split, data[f"{split}_names"], data[f"{split}_images"], data[f"{split}_votes"])

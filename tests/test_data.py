"""FER+ reader: official counts, label-mode arithmetic on real rows, the CSV pair, the cache."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fer_ensemble.data import LABEL_MODES, load_labelled, load_split, process_votes
from fer_ensemble.data.ferplus import pack_splits
from fer_ensemble.errors import UserError


def test_official_majority_counts(ferplus: Path) -> None:
    assert len(load_labelled(ferplus, "train")) == 25_045
    assert len(load_labelled(ferplus, "valid")) == 3_191
    assert len(load_labelled(ferplus, "test")) == 3_137


def test_images_are_decoded_once_into_uint8(ferplus: Path) -> None:
    split = load_split(ferplus, "valid")
    assert split.images.shape == (3_579, 48, 48) and split.images.dtype == np.uint8
    assert split.votes.shape == (3_579, 10)
    again = load_split(ferplus, "valid")  # from the cache
    np.testing.assert_array_equal(split.images, again.images)


def _row(ferplus: Path, name: str) -> list[int]:
    with open(ferplus / "FER2013Train" / "label.csv", newline="") as f:
        for row in csv.reader(f):
            if row[0] == name:
                return [int(v) for v in row[2:12]]
    raise KeyError(name)


UNKNOWN = [0.0] * 8 + [1.0, 0.0]


@pytest.mark.parametrize(
    ("name", "votes", "expected"),
    [
        # a clear majority: the single 'sadness' vote is an outlier and is dropped
        ("fer0000001.png", [6, 0, 1, 1, 0, 0, 0, 0, 2, 0], {
            "majority": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "crossentropy": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "multi_target": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 2 of 8 votes is under 30 %
        }),
        # 4 of 9 votes is no majority; the two strongest classes cover 75 %
        ("fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0], {
            "majority": UNKNOWN,
            "crossentropy": [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0, 0, 0],
            "multi_target": [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0, 0, 0],
        }),
        # a tie: both tied classes are taken together
        ("fer0000003.png", [4, 0, 0, 4, 1, 0, 0, 0, 1, 0], {
            "majority": UNKNOWN,
            "crossentropy": [0.5, 0, 0, 0.5, 0, 0, 0, 0, 0, 0],
            "multi_target": [0.5, 0, 0, 0.5, 0, 0, 0, 0, 0, 0],
        }),
        # three classes reach 75 %; multi-target keeps only 4 of 8 votes and rejects the image
        ("fer0000018.png", [1, 0, 2, 4, 2, 0, 0, 0, 1, 0], {
            "majority": UNKNOWN,
            "crossentropy": [0, 0, 0.25, 0.5, 0.25, 0, 0, 0, 0, 0],
            "multi_target": UNKNOWN,
        }),
        # 'unknown' ties with the top emotion: dropped, and 3 of 8 votes is too few
        ("fer0000196.png", [3, 0, 2, 1, 1, 0, 0, 0, 3, 0], {
            "majority": UNKNOWN,
            "crossentropy": UNKNOWN,
            "multi_target": [0.5, 0, 0, 0, 0, 0, 0, 0, 0.5, 0],
        }),
    ],
)
def test_label_modes_on_real_rows(ferplus: Path, name: str, votes: list[int], expected: dict) -> None:
    assert _row(ferplus, name) == votes
    for mode, distribution in expected.items():
        np.testing.assert_allclose(process_votes(votes, mode), distribution, err_msg=mode)
    np.testing.assert_allclose(process_votes(votes, "probability"), expected["crossentropy"])


def test_labelled_targets_follow_the_modes(ferplus: Path) -> None:
    split = load_split(ferplus, "train")
    for mode in LABEL_MODES:
        labelled = split.labelled(mode)
        assert labelled.targets.shape == (len(labelled), 8)
        np.testing.assert_allclose(labelled.targets.sum(axis=1), 1.0, rtol=1e-6)
    majority = split.labelled("majority")
    assert set(np.unique(majority.targets)) == {0.0, 1.0}
    # fer0000001 is kept with label neutral; fer0000000 has no majority and is left out
    names = list(majority.names)
    assert majority.labels[names.index("fer0000001.png")] == 0
    assert "fer0000000.png" not in names


def test_csv_pair_matches_the_folder_layout(ferplus: Path, tmp_path: Path) -> None:
    """fer2013.csv (generated pixels) + the real fer2013new.csv rows give the same split."""
    with open(ferplus / "fer2013new.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    by_usage: dict[str, list] = {}
    for row in rows:
        by_usage.setdefault(row[0], []).append(row)
    unnamed = [r for r in by_usage["Training"] if not r[1]][:3]
    picked = by_usage["Training"][:40] + unnamed + by_usage["PublicTest"][:20] + by_usage["PrivateTest"][:20]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (len(picked), 48 * 48))
    with open(tmp_path / "fer2013new.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *picked])
    with open(tmp_path / "fer2013.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for row, values in zip(picked, pixels):
            writer.writerow([0, " ".join(map(str, values)), row[0]])

    train = load_split(tmp_path, "train", cache_dir=tmp_path / "cache")
    named = [i for i, row in enumerate(picked) if row[0] == "Training" and row[1]]
    assert len(named) < 43 and list(train.names) == [picked[i][1] for i in named]  # unnamed rows skipped
    np.testing.assert_array_equal(train.images[-1], pixels[named[-1]].reshape(48, 48))
    folder = load_split(ferplus, "train")
    index = {name: i for i, name in enumerate(folder.names)}
    np.testing.assert_array_equal(train.votes, folder.votes[[index[n] for n in train.names]])
    for split, usage in (("valid", "PublicTest"), ("test", "PrivateTest")):
        expected = [row[1] for row in picked if row[0] == usage and row[1]]
        assert list(load_split(tmp_path, split, cache_dir=tmp_path / "cache").names) == expected

    # the same splits, packed into one file for a machine without the dataset
    pack = pack_splits(tmp_path, tmp_path / "ferplus.npz.xz", ("train", "valid"))
    packed = load_split(pack, "train")
    np.testing.assert_array_equal(packed.images, train.images)
    np.testing.assert_array_equal(packed.votes, train.votes)
    assert list(packed.names) == list(train.names)
    with pytest.raises(UserError, match="no test split"):
        load_split(pack, "test")


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither"):
        load_split(tmp_path, "train")

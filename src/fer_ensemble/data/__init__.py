"""Datasets (torch-free readers)."""

from fer_ensemble.data.ferplus import (
    LABEL_MODES,
    SPLITS,
    FerPlusSplit,
    LabelledSplit,
    load_labelled,
    load_split,
    process_votes,
)

__all__ = [
    "LABEL_MODES",
    "SPLITS",
    "FerPlusSplit",
    "LabelledSplit",
    "load_labelled",
    "load_split",
    "process_votes",
]

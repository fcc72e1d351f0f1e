"""Carry a run's best weights off a lent GPU machine: fp16 state-dict parts of at most 16 MiB.

``save_fp16_parts`` writes ``<model>.partN.pt`` files plus ``<model>.meta.json`` (what ``best.pt``
records besides the weights, and the run's metrics); ``import_weights`` joins them back into
``<out>/<model>/best.pt`` that ``fer-ensemble export`` takes: ``python -m tools.gpu_weights
FOLDER --out runs/gpu`` (the ``train`` extra). Developer tooling: not installed with the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fer_ensemble.cli import answered
from fer_ensemble.errors import UserError, json_text

if TYPE_CHECKING:
    import torch

PART_BYTES = 15 * 2**20
"""Tensor bytes per part: leaves room for pickling under 16 MiB."""


def save_fp16_parts(best_file: Path, out_dir: Path, metrics_file: Path | None = None) -> list[Path]:
    """Split ``best.pt``'s weights (floating tensors as fp16) into files of at most 16 MiB."""
    import torch  # the train extra: imported when used, so a missing one is run_command's one line

    from fer_ensemble.models import read_weights

    state = read_weights(best_file, "trained member")
    name = state["model_name"]
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state["model"].items():
        tensor = tensor.half() if tensor.is_floating_point() else tensor
        nbytes = tensor.numel() * tensor.element_size()
        if size + nbytes > PART_BYTES and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][key] = tensor.contiguous()
        size += nbytes
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, tensors in enumerate(parts):
        path = out_dir / f"{name}.part{index}.pt"
        torch.save(tensors, path)
        written.append(path)
    meta = {k: v for k, v in state.items() if k != "model"}
    meta["parts"] = [p.name for p in written]
    if metrics_file is not None and metrics_file.is_file():
        meta["metrics"] = [json.loads(line) for line in metrics_file.read_text().splitlines() if line]
    meta_path = out_dir / f"{name}.meta.json"
    meta_path.write_text(json_text(meta, indent=2, default=str))
    return [*written, meta_path]


def import_weights(folder: str | Path, out: str | Path) -> list[Path]:
    """Join every ``<model>.meta.json`` + parts in ``folder`` into ``out/<model>/best.pt`` (fp32)."""
    import torch

    from fer_ensemble.training.engine import save_atomic

    folder, out = Path(folder), Path(out)
    runs = []
    for meta_path in sorted(folder.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        weights: dict[str, torch.Tensor] = {}
        for part in meta.pop("parts"):
            tensors = torch.load(folder / part, map_location="cpu", weights_only=True)
            weights.update({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
        metrics = meta.pop("metrics", [])
        run = out / meta["model_name"]
        run.mkdir(parents=True, exist_ok=True)
        save_atomic({**meta, "model": weights}, run / "best.pt")
        if metrics:
            (run / "metrics.jsonl").write_text("".join(json_text(m) + "\n" for m in metrics))
        runs.append(run)
    if not runs:
        raise UserError(f"no <model>.meta.json in {folder}")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_weights",
                                     description="the fp16 parts scripts/train_gpu.py wrote, joined into run folders")
    parser.add_argument("folder", help="the folder the GPU script wrote")
    parser.add_argument("--out", required=True, help="where to write <model>/best.pt")
    args = parser.parse_args(argv)

    def run() -> int:
        for run in import_weights(args.folder, args.out):
            print(f"wrote {run}/best.pt; export it with: fer-ensemble export {run} --out DIR")
        return 0

    return answered("tools.gpu_weights", run)


if __name__ == "__main__":
    sys.exit(main())

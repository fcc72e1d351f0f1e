"""A batch pool task that dies as a segfaulting codec would, for ``test_batch``: imported by the
spawned pool processes by name, so it lives in a module of its own (no test module's imports)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def crashing_task(task: dict) -> dict:
    """The local pool's task function, except that a source named ``crash.*`` kills its process."""
    from fer_ensemble.batch import engines

    if Path(task["source"]).stem == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return engines._run_task(task)


class CrashingRayWorker:
    """``engines.RayWorker``, except that a source named ``crash.*`` kills its actor's process (a
    mixin: the test builds the class over the real one, pickled by value for the actors)."""

    def __call__(self, batch: dict) -> dict:
        if any(Path(str(source)).stem == "crash" for source in batch["source"]):
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().__call__(batch)  # type: ignore[misc]

"""Developer and research tooling: what chose and measures the shipped settings, run from a checkout
(``python -m tools.NAME`` in the repository's root) and never installed with the package, which
keeps only what a user runs."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_command(name: str, work: Callable[[], int | None], interrupted: str = "") -> int:
    """``work()``'s exit code (None: 0), answering as the package's commands do, in one line on
    stderr naming the tool: a user's mistake (``UserError``: its exit code, 2 unless it says
    otherwise), a missing file (1), a missing extra (2, naming it) and Ctrl-C (130, ``interrupted``
    and what was kept, ``interrupted``)."""
    from fer_ensemble.errors import ExitCode, UserError, missing_extra

    def fail(message: object, code: int) -> int:
        print(f"tools.{name}: {message}", file=sys.stderr)
        return code

    try:
        return int(work() or 0)
    except UserError as error:
        return fail(error, int(error.exit_code))
    except FileNotFoundError as error:
        return fail(f"{error.filename}: {error.strerror}", int(ExitCode.INPUT_FAILED))
    except ModuleNotFoundError as error:
        if (message := missing_extra(error)) is None:
            raise
        return fail(message, int(ExitCode.USAGE))
    except KeyboardInterrupt:
        return fail(f"interrupted{': ' + interrupted if interrupted else ''}", int(ExitCode.INTERRUPTED))

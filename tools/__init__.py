"""Developer and research tooling: what chose and measures the shipped settings, run from a checkout
(``python -m tools.NAME`` in the repository's root) and never installed with the package, which
keeps only what a user runs."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_command(name: str, work: Callable[[], int]) -> int:
    """``work()``'s exit code, with a user's mistake (``UserError``) as one line on stderr naming the
    tool (its exit code, 2 unless it says otherwise) and Ctrl-C as ``interrupted`` (130), as the
    package's commands answer them."""
    from fer_ensemble.errors import ExitCode, UserError

    try:
        return int(work())
    except UserError as error:
        print(f"tools.{name}: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print(f"tools.{name}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)

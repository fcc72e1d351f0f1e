"""The text a user reads: the README and every page of the documentation site in docs/ (issue 23).
The tests that check a documented table against what its script prints look at all of it, since
the measured tables moved from the README to the docs pages."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def documentation_pages() -> list[Path]:
    """README.md, then every Markdown page of docs/, in a fixed order."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def documentation_text() -> str:
    return "\n".join(page.read_text() for page in documentation_pages())

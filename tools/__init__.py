"""Developer and research tooling: what chose and measures the shipped settings, run from a checkout
(``python -m tools.NAME`` in the repository's root) and never installed with the package, which
keeps only what a user runs."""

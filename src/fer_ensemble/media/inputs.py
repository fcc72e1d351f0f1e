"""What the user named: files, folders, globs and URIs (fsspec) expanded into the inputs to read,
each kind told by its extension; the bundled samples (``SAMPLES``)."""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fer_ensemble.errors import UserError
from fer_ensemble.media.kinds import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, extension
from fer_ensemble.outputs import is_partial

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
"""The sample media shipped in the package (the demo's photos and clip)."""


URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
"""A URI's start (a scheme of two or more characters, then ``://``): ``is_uri``'s test."""


def is_uri(source: str) -> bool:
    """Whether ``source`` is a URI (``s3://bucket/key``, ``gs://...``, ``file:///tmp/a.jpg``: a
    scheme of two or more characters, then ``://``), read through fsspec, rather than a local path.
    The one test every layer uses."""
    return URI_SCHEME.match(source) is not None


CLOUD_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
"""fsspec's file systems of the ``cloud`` extra, by URI scheme."""


def filesystem(uri: str):
    """fsspec's ``(file system, token, paths)`` for ``uri`` (its glob expanded); a UserError naming
    the package and the extra when the scheme's file system is not installed (fsspec raises a bare
    ImportError), or naming the scheme when fsspec knows none of that name. Needs fsspec (the
    ``batch`` extra)."""
    import fsspec

    try:
        return fsspec.get_fs_token_paths(uri)
    except ValueError as error:
        if "protocol not known" not in str(error).lower():
            raise
        raise UserError(f"{uri}: {uri.split('://', 1)[0]}:// is no URI scheme fsspec reads") from None
    except ImportError:
        scheme = uri.split("://", 1)[0]
        package = CLOUD_PACKAGES.get(scheme)
        install = f"pip install 'fer-ensemble[cloud]' ({package})" if package else "install fsspec's package for it"
        raise UserError(f"{uri}: reading {scheme}:// needs a file system that is not installed: {install}") from None


@dataclass
class Inputs:
    """What the user's paths, folders, globs and URIs name (``expand_inputs``).

    ``sources``: the files, in the order named (a folder's and a glob's sorted), each once: local
    paths as strings (an explicit file as the user spelled it) or URIs; ``missing``: items that
    name nothing; ``empty``: folders and globs that exist or match but hold no file of the kinds
    wanted; ``skipped``: the files such scans passed over, by extension (hidden files not
    counted)."""

    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    videos: bool = False  # videos were wanted besides images
    _seen: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def files(self) -> list[Path]:
        """``sources`` as paths (for local inputs: a URI is no path)."""
        return [Path(s) for s in self.sources]

    def add(self, sources: list[str]) -> None:
        """Append ``sources`` not already listed: a local file once however it is spelled (by its
        resolved path), a URI once by its text."""
        for source in sources:
            key = source if is_uri(source) else os.path.realpath(source)
            if key not in self._seen:
                self._seen.add(key)
                self.sources.append(source)

    def describe_skipped(self) -> str | None:
        """One line saying which files folder and glob scans passed over, by extension; None if none."""
        if not self.skipped:
            return None
        kinds = ", ".join(f"{ext or '(no extension)'} {n}" for ext, n in self.skipped.most_common())
        wanted = "image or video" if self.videos else "image"
        return (f"skipped {sum(self.skipped.values())} file(s) in folders and globs whose extension is no "
                f"{wanted} format OpenCV reads: {kinds} (name a file to try it anyway)")


def expand_inputs(items: list[str], exclude: Path | None = None, videos: bool = False,
                  remote: bool = False, into: Inputs | None = None) -> Inputs:
    """The files that ``items`` name: a file as named (any extension); a folder's files, recursively,
    and a glob's matches (``**`` recursive), sorted, keeping those whose extension is an image
    format OpenCV reads (``IMAGE_EXTENSIONS``; with ``videos``, or ``into.videos``, ``VIDEO_EXTENSIONS`` too) and
    counting the others in ``skipped``. Folder scans leave out ``exclude`` (an output folder) and
    what lies in it. With ``remote``, a URI (``is_uri``) is read through fsspec the same way
    (a folder, a glob or an object), and a scheme without its file system is a UserError; without
    it, a URI is looked up as a local path. Each file is listed once (``Inputs.add``). ``into``:
    an ``Inputs`` to add to (returned), e.g. one that a caller's manifests already filled."""
    found = into if into is not None else Inputs(videos=videos)
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS if found.videos else IMAGE_EXTENSIONS  # into's own, if given
    excluded = exclude.resolve() if exclude is not None else None

    def keep(names: list[tuple[str, str]]) -> list[str]:
        """(source, base name) pairs: the sources of a wanted kind; the others counted as skipped."""
        kept = []
        for source, name in names:
            if is_partial(name):  # a command's output being written, or left by a kill: never an input
                continue
            if extension(source) in wanted:
                kept.append(source)
            elif not name.startswith("."):
                found.skipped[extension(source)] += 1
        return kept

    for item in items:
        if remote and is_uri(item):
            exists, listed = _expand_remote(item, keep)
        else:
            exists, listed = _expand_local(item, keep, excluded)
        if listed:
            found.add(listed)
        else:
            (found.empty if exists else found.missing).append(item)
    return found


def _expand_local(item: str, keep, excluded: Path | None) -> tuple[bool, list[str]]:
    path = Path(item)
    if path.is_dir():
        children = sorted(p for p in path.rglob("*") if p.is_file()
                          and (excluded is None or not p.resolve().is_relative_to(excluded)))
        return True, keep([(str(p), p.name) for p in children])
    if path.is_file():
        return True, [item]
    matches = sorted(glob.glob(item, recursive=True))
    return bool(matches), keep([(m, Path(m).name) for m in matches if Path(m).is_file()])


def _expand_remote(item: str, keep) -> tuple[bool, list[str]]:
    fs, _, paths = filesystem(item)
    protocol = item.split("://", 1)[0]

    def uri(path: str) -> str:
        return path if path.startswith(f"{protocol}://") else f"{protocol}://{path}"

    exists, listed = False, []
    for path in paths:
        if fs.isdir(path):
            exists = True
            listed += keep([(uri(p), p.rstrip("/").rsplit("/", 1)[-1]) for p in sorted(fs.find(path))])
        elif fs.exists(path):
            exists = True
            name = path.rstrip("/").rsplit("/", 1)[-1]
            listed += keep([(uri(path), name)]) if glob.has_magic(item) else [uri(path)]
    return exists, listed

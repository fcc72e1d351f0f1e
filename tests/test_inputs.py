"""Issue 24, item 7: one input expander (media.inputs.expand_inputs) for predict and batch: local paths,
folders, globs and fsspec URIs, with skip reporting, output exclusion and de-duplication for both;
one URI test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import need

from fer_ensemble.errors import UserError
from fer_ensemble.media.inputs import expand_inputs, is_uri
from fer_ensemble.outputs import is_partial, partial_path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "out").mkdir()
    for name in ("b.jpg", "a.png", "sub/c.JPG", "clip.mp4", "notes.txt", ".hidden", "out/a.png"):
        (root / name).write_bytes(b"x")
    return root


def test_uris_and_paths() -> None:
    assert all(map(is_uri, ["s3://bucket/a.jpg", "gs://b/c/", "file:///tmp/a.jpg", "memory://x", "s3a://b/k"]))
    assert not any(map(is_uri, ["/tmp/a.jpg", "a.jpg", "photos/http:/x", "C://x", "dir/a://b"]))


def test_folders_skip_report_exclude_and_sort(folder: Path) -> None:
    found = expand_inputs([str(folder)], exclude=folder / "out")
    assert [Path(s).relative_to(folder).as_posix() for s in found.sources] == ["a.png", "b.jpg", "sub/c.JPG"]
    assert found.skipped == {".mp4": 1, ".txt": 1}  # the hidden file is not counted, the output folder not read
    assert "skipped 2 file(s)" in found.describe_skipped() and "no image format" in found.describe_skipped()
    both = expand_inputs([str(folder)], exclude=folder / "out", videos=True)
    assert [Path(s).name for s in both.sources] == ["a.png", "b.jpg", "clip.mp4", "c.JPG"]
    assert "no image or video format OpenCV reads: .txt 1" in both.describe_skipped()


def test_each_file_once_however_named(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    found = expand_inputs(["b.jpg", str(folder / "b.jpg"), "./b.jpg", ".", "*.jpg"], exclude=folder / "out")
    assert found.sources == ["b.jpg", "a.png", "sub/c.JPG"] and found.files[0] == Path("b.jpg")
    assert not found.missing and not found.empty  # named again is not "named nothing"


def test_globs_filter_like_folders_and_files_are_taken_as_named(folder: Path) -> None:
    found = expand_inputs([str(folder / "*"), str(folder / "notes.txt")])
    assert [Path(s).name for s in found.sources] == ["a.png", "b.jpg", "notes.txt"]  # the named file: any extension
    assert found.skipped == {".mp4": 1, ".txt": 1}
    nothing = expand_inputs([str(folder / "*.txt"), str(folder / "missing.jpg"), str(folder / "*.gif")])
    assert nothing.empty == [str(folder / "*.txt")]  # matched, but no image
    assert nothing.missing == [str(folder / "missing.jpg"), str(folder / "*.gif")]


def test_uris_only_when_asked(folder: Path) -> None:
    need("fsspec")
    uri = folder.as_uri()  # file:///.../in
    assert expand_inputs([uri]).missing == [uri]  # predict: a URI is no local path
    found = expand_inputs([uri, uri + "/*.jpg", uri + "/b.jpg"], videos=True, remote=True)
    assert [s.removeprefix("file://") for s in found.sources] == [
        str(folder / n) for n in ("a.png", "b.jpg", "clip.mp4", "out/a.png", "sub/c.JPG")]
    assert found.skipped == {".txt": 1} and not found.missing and not found.empty
    assert expand_inputs([uri + "/none.jpg"], remote=True).missing == [uri + "/none.jpg"]


def test_batch_inputs_add_manifests(folder: Path) -> None:
    need("fsspec")
    from fer_ensemble.batch.plan import batch_inputs

    manifest = folder.parent / "list.csv"
    manifest.write_text(f"path\n{folder / 'b.jpg'}\ns3://bucket/x.mp4\n")
    empty = folder.parent / "empty.csv"
    empty.write_text("path\n")
    items = [str(manifest), str(folder), str(empty), str(folder / "nothing-*")]
    found = batch_inputs(items, exclude=folder / "out")
    assert found.sources == [str(folder / "b.jpg"), "s3://bucket/x.mp4", str(folder / "a.png"),
                             str(folder / "clip.mp4"), str(folder / "sub" / "c.JPG")]
    assert found.skipped == {".txt": 1} and "image or video" in found.describe_skipped()
    assert found.empty == [str(empty)] and found.missing == [str(folder / "nothing-*")]
    with pytest.raises(UserError, match="no manifest at"):
        batch_inputs([str(folder / "absent.csv")])


def test_an_unreadable_scheme_is_one_line() -> None:
    need("fsspec")
    with pytest.raises(UserError, match="nosuchscheme-x:// is no URI scheme fsspec reads"):  # was a traceback
        expand_inputs(["nosuchscheme-x://bucket/a.jpg"], remote=True)


def test_hidden_images_are_kept(tmp_path: Path) -> None:
    (tmp_path / ".a.jpg").write_bytes(b"x")
    assert [os.path.basename(s) for s in expand_inputs([str(tmp_path)]).sources] == [".a.jpg"]


def test_a_partial_output_is_never_an_input(tmp_path: Path) -> None:
    """A command killed while writing leaves its hidden partial file (``outputs.partial_path``,
    the suffix kept): a later folder scan must not read a half photo or video."""
    left = partial_path(tmp_path / "photo.jpg")
    left.write_bytes(b"x")
    (tmp_path / ".clip.12.partial.mp4").write_bytes(b"x")
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert is_partial(left.name) and not is_partial("photo.jpg") and not is_partial(".a.jpg")
    found = expand_inputs([str(tmp_path)], videos=True)
    assert [os.path.basename(s) for s in found.sources] == ["photo.jpg"] and not found.skipped

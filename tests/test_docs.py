"""The documentation (issue 23): a README that starts with use and stays short, and the MkDocs site
in docs/ that builds with --strict, documents every command, endpoint and public name, shows the
pictures scripts/docs_figures.py draws, runs its Python examples (the docs_src/ files the pages
include, issue 34 item 5) and opens offline in Chromium with working navigation and search."""

from __future__ import annotations

import argparse
import ast
import functools
import html
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from documentation import DOCS, README, documentation_pages, documentation_text
from support import REPO, need, skip_or_fail

PACKAGE = REPO / "src" / "fer_ensemble"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOT_IN_THE_REFERENCE = ("apps", "cli", "server")
"""Documented by their commands (command-line.md) and endpoints (web.md) rather than by the API
reference: their functions are the commands' insides."""
ASSETS = DOCS / "assets"


# --- the README -------------------------------------------------------------------------------

def test_the_readme_is_short_and_starts_with_use() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    order = ["Fresh machine: two commands", "Python API", "Main commands", "Results", "Install extras",
             "Documentation", "Licence and data terms"]
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert [h for h in headings if h in order] == order
    intro = text.split("\n## ", 1)[0]
    assert "![" in intro  # one annotated picture before any section
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/fer-ensemble demo" in text
    assert "\nbash scripts/test.sh\n" in text and "mkdocs serve" in text
    for name in ("LICENSE", "CHANGELOG.md", "CONTRIBUTING.md", "docs/model-card.md"):
        assert (REPO / name).is_file() and f"]({name})" in text, name



def test_the_readme_gives_the_test_environments_size_and_the_batch_page_its_file_names() -> None:
    """Robustness issue, item 20: the test suite's paragraph says how large its environment is (the
    CUDA torch wheel) and how long it took to install; docs/batch.md says what the hash in the
    faces/ and sources/ file names is of, with an example that ``source_key`` gives."""
    from fer_ensemble.batch.output import source_key

    paragraph = README.read_text().split("The whole test suite", 1)[1].split("```", 1)[0]
    assert "about 7 GB" in paragraph and "CUDA" in paragraph and "minutes" in paragraph.split("7 GB", 1)[1]
    assert "PyPI serves none" in paragraph and "--index-url https://download.pytorch.org/whl/cpu" in paragraph
    batch = (DOCS / "batch.md").read_text()
    assert "faces/<source>.parquet" not in batch and "SHA-1 of the source's whole path or URI" in batch
    assert f"`clips/clip.mp4` gives\n  `{source_key('clips/clip.mp4')}`" in batch

def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (MkDocs gives the same to these pages')."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_of_the_readme_resolves() -> None:
    """The README is read on the forge, outside the site's strict build: its links and anchors are
    checked here."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = REPO / path
        if not page.exists():
            broken.append(target)
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(target)
    assert broken == []


# --- the examples: docs_src/ -------------------------------------------------------------------

DOCS_SRC = REPO / "docs_src"
EXAMPLES = sorted(path.name for path in DOCS_SRC.glob("*.py"))
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.M)
"""A snippets include (pymdownx.snippets, base path the repository's root), alone on its line."""


def fenced_blocks(page: Path, language: str) -> list[str]:
    """The contents of the page's ``` fences of ``language``, as written (an include unexpanded)."""
    return re.findall(rf"^```{language}\n(.*?)^```$", page.read_text(), re.S | re.M)


def expanded(block: str) -> str:
    """A block as the built page shows it: each include replaced by its file."""
    return INCLUDE.sub(lambda match: (REPO / match.group(1)).read_text().rstrip("\n"), block)


def test_every_python_example_of_the_docs_is_a_docs_src_file() -> None:
    """Issue 34, item 5: each Python block of a docs page is one include of a docs_src/ file (the
    file a test runs), and each docs_src/ file is shown by a page."""
    included = []
    for page in [*documentation_pages()[1:], REPO / "CONTRIBUTING.md"]:
        for block in fenced_blocks(page, "python"):
            assert INCLUDE.fullmatch(block.strip()), f"{page.name}: inline Python; put it in docs_src/ and include it"
            included.append(INCLUDE.fullmatch(block.strip()).group(1))
    assert sorted(set(included)) == [f"docs_src/{name}" for name in EXAMPLES]
    assert len(EXAMPLES) >= 4


def test_the_readme_python_example_is_its_docs_src_file() -> None:
    """GitHub does not expand includes, so the README keeps its example inline: the same text as
    docs_src/predict_photo.py, which the pages include and a test runs."""
    (block,) = fenced_blocks(README, "python")
    assert block.strip() == (DOCS_SRC / "predict_photo.py").read_text().strip()


def example_folder(folder: Path) -> Path:
    """The files the examples read, made from the bundled samples: ``group.jpg`` (the astronaut
    and Grace Hopper side by side), ``portrait.jpg`` and ``portrait-at-rest.jpg`` (Grace Hopper),
    ``clip.mp4`` (the sample clip)."""
    import cv2
    import numpy as np

    from fer_ensemble.media.inputs import SAMPLES

    astronaut, hopper = (cv2.imread(str(SAMPLES / name)) for name in ("astronaut.png", "grace_hopper.jpg"))
    height = astronaut.shape[0]
    hopper_resized = cv2.resize(hopper, (round(hopper.shape[1] * height / hopper.shape[0]), height))
    cv2.imwrite(str(folder / "group.jpg"), np.hstack([astronaut, hopper_resized]))
    for name in ("portrait.jpg", "portrait-at-rest.jpg"):
        shutil.copy(SAMPLES / "grace_hopper.jpg", folder / name)
    shutil.copy(SAMPLES / "faces.mp4", folder / "clip.mp4")
    return folder


FACE_LINE = re.compile(r"^\((-?\d+), (-?\d+), (\d+), (\d+)\) (\w+) ([01]\.\d+)", re.M)
"""A face as the examples print it: ``(x, y, w, h) label score``."""


def check_group_photo(out: str, folder: Path) -> None:
    """The group photo's two faces, printed with their labels and annotated into a copy."""
    import cv2

    faces = FACE_LINE.findall(out)
    assert [label for *_, label, _ in faces] == ["happiness", "neutral"], out  # the astronaut smiles
    assert all(0 < float(score) <= 1 for *_, score in faces)
    annotated = cv2.imread(str(folder / "annotated.jpg"))
    assert annotated is not None and annotated.shape == cv2.imread(str(folder / "group.jpg")).shape


def check_python_api(out: str, folder: Path) -> None:
    """The photo, the Haar detector, every frame of the clip with its tracks, and a face read
    relative to the resting face."""
    check_group_photo(out, folder)
    lines = out.splitlines()
    assert ast.literal_eval(next(ln for ln in lines if ln.startswith("haar: ")).split(": ", 1)[1])
    frames = [ast.literal_eval(ln.split(" s ", 1)[1]) for ln in lines if re.match(r"\d+\.\d\d s \[", ln)]
    assert len(frames) == 60 and sum(bool(faces) for faces in frames) > 50
    assert {track_id for faces in frames for track_id, _ in faces} >= {1}
    relative = ast.literal_eval(lines[-1].split(": ", 1)[1])
    assert relative and all(is_relative for _, is_relative in relative), lines[-1]


def check_detectors(out: str, folder: Path) -> None:
    """Each detector's labels, by the command that uses it; BlazeFace finds both faces."""
    found = {command: ast.literal_eval(labels) for command, labels in
             (line.split(": ", 1) for line in out.splitlines())}
    assert list(found) == ["predict", "webcam", "predict --detector haar", "webcam --detector haar --min-face 60"]
    assert found["predict"] == found["webcam"] == ["happiness", "neutral"] and all(found.values()), found


def check_resting_face(out: str, folder: Path) -> None:
    """The portrait read relative to the resting face; a stream's tracks take and clear theirs."""
    photo, video = out.splitlines()
    assert ast.literal_eval(photo.removeprefix("photo: ")) == [("neutral", True)]
    took, cleared = re.fullmatch(r"video: took (\[.*\]) cleared (\[.*\])", video).groups()
    assert ast.literal_eval(took) and ast.literal_eval(cleared) == ast.literal_eval(took)


EXAMPLE_CHECKS = {"predict_photo.py": check_group_photo, "python_api.py": check_python_api,
                  "detectors.py": check_detectors, "resting_face.py": check_resting_face}


def test_every_example_has_its_check() -> None:
    assert sorted(EXAMPLE_CHECKS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_docs_example_runs(name: str, tmp_path: Path) -> None:
    """Each docs_src/ file run as a user would, ``python example.py`` in a folder holding the files
    it reads, and what it prints and writes checked (about a second each)."""
    folder = example_folder(tmp_path)
    result = subprocess.run([sys.executable, str(DOCS_SRC / name)], cwd=folder, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    EXAMPLE_CHECKS[name](result.stdout, folder)


# --- the command lines of the docs ---------------------------------------------------------------

SHELL_OPERATORS = {"&&", "||", ";", "&", "|"}
PLACEHOLDERS = {"N": "2", "...": None}
"""Placeholders of the docs' command lines: ``N`` (a count) as a number, ``...`` (the rest of
the options, as above) left out; the others (``FILE``, ``T``, ``RUN_DIR``) parse as written."""


def shell_commands(block: str) -> list[tuple[str, list[str]]]:
    """Each command of a bash block as (its line, its words): continuations joined, comments and
    quotes removed as the shell would, lines split at ``&&``, ``;``, ``&`` and pipes. A ``|``
    inside ``[...]`` is the usage notation's "or" and stays."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        depth = 0
        for word in lexer:
            if word in SHELL_OPERATORS and depth == 0:
                commands.append((line, words))
                words = []
                continue
            depth += word.count("[") - word.count("]")
            words.append(word)
        commands.append((line, words))
    return [(line, words) for line, words in commands if words]


def cli_arguments(words: list[str]) -> list[str] | None:
    """The arguments a command gives fer-ensemble (``fer-ensemble``, ``.venv/bin/fer-ensemble``,
    ``python -m fer_ensemble.cli``, after any ``NAME=value``), or None for another program."""
    for i, word in enumerate(words):
        if Path(word).name == "fer-ensemble" and all("=" in w for w in words[:i]):
            return words[i + 1:]
        if word == "-m" and words[i + 1:i + 2] == ["fer_ensemble.cli"]:
            return words[i + 2:]
    return None


def usage_variants(words: list[str]) -> list[list[str]]:
    """The command lines a usage synopsis stands for: each ``[...]`` left out or given, each
    ``a | b`` inside one as each of its choices (``webcam [--camera N | --source FILE]``: three
    lines); placeholders replaced (``PLACEHOLDERS``)."""
    tokens: list[str] = []
    for word in words:  # "[--camera" -> "[", "--camera"; "FILE]" -> "FILE", "]"
        inner = word.lstrip("[")
        tokens += ["["] * (len(word) - len(inner))
        tokens += [inner.rstrip("]")] if inner.rstrip("]") else []
        tokens += ["]"] * (len(inner) - len(inner.rstrip("]")))

    def sequence(i: int) -> tuple[list[list[str]], int]:
        """The variants of the tokens from ``i`` to the ``]`` (or the end) that closes them."""
        choices: list[list[list[str]]] = [[[]]]  # per "|"-separated choice, its variants
        while i < len(tokens) and tokens[i] != "]":
            if tokens[i] == "[":
                optional, i = sequence(i + 1)
                choices[-1] = [a + b for a in choices[-1] for b in [[], *optional]]
            elif tokens[i] == "|":
                choices.append([[]])
            elif (value := PLACEHOLDERS.get(tokens[i], tokens[i])) is not None:
                choices[-1] = [a + [value] for a in choices[-1]]
            i += 1
        return [variant for choice in choices for variant in choice], i

    return sequence(0)[0]


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    """(page, line, arguments) for every fer-ensemble command in a bash block of the README, a docs
    page or CONTRIBUTING.md (a block's includes expanded), one per usage variant."""
    lines = []
    for page in [*documentation_pages(), REPO / "CONTRIBUTING.md"]:
        for block in fenced_blocks(page, "bash"):
            for line, words in shell_commands(expanded(block)):
                if (arguments := cli_arguments(words)) is not None:
                    lines += [(page.name, line, variant) for variant in usage_variants(arguments)]
    return lines


def test_usage_variants_read_the_synopsis_notation() -> None:
    assert usage_variants("webcam [--camera N | --source FILE] [--no-window]".split()) == [
        ["webcam"], ["webcam", "--no-window"], ["webcam", "--camera", "2"], ["webcam", "--camera", "2", "--no-window"],
        ["webcam", "--source", "FILE"], ["webcam", "--source", "FILE", "--no-window"]]
    assert usage_variants("train --model resnet50 ...".split()) == [["train", "--model", "resnet50"]]
    assert shell_commands('A=1 fer-ensemble x \\\n  --y "a b" &  # c\nfer-ensemble a && fer-ensemble b') == [
        ('A=1 fer-ensemble x    --y "a b" &  # c', ["A=1", "fer-ensemble", "x", "--y", "a b"]),
        ("fer-ensemble a && fer-ensemble b", ["fer-ensemble", "a"]),
        ("fer-ensemble a && fer-ensemble b", ["fer-ensemble", "b"])]


def test_every_documented_command_line_parses() -> None:
    """Each fer-ensemble command line in the docs' bash blocks (and the README's) is accepted by the
    command's own parser, so a flag renamed or removed in the code cannot live on in the docs."""
    import contextlib
    import io

    from fer_ensemble.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for command in [parser, *commands.choices.values()]:
        command.allow_abbrev = False  # else "--stride" would still parse once renamed "--stride-frames"
    refused = []
    lines = documented_command_lines()
    for page, line, arguments in lines:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(arguments)
        except SystemExit:
            refused.append(f"{page}: {line.strip()}\n    {' '.join(arguments)}\n    {stderr.getvalue().strip()}")
    assert refused == [], "\n".join(refused)
    assert len({line for _, line, _ in lines}) >= 50 and len(lines) >= 150


# --- what the docs must cover -----------------------------------------------------------------

def test_every_dependency_is_explained() -> None:
    """Getting started says why each extra and each package of pyproject.toml is there."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    page = (DOCS / "getting-started.md").read_text()
    table = page[page.index("| extra | package | why |"):]
    table = table[:table.index("\n\n")]

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]

    missing = [f"extra {extra}" for extra in project["optional-dependencies"] if f"| `{extra}` |" not in table]
    missing += [name(r) for r in project["dependencies"] if name(r) not in table]
    missing += [name(r) for rs in project["optional-dependencies"].values() for r in rs if name(r) not in table]
    assert missing == [], f"not in the table of docs/getting-started.md: {missing}"


def cli_commands() -> list[str]:
    from fer_ensemble.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(commands.choices)


def test_every_command_is_documented() -> None:
    """Each subcommand of the parser has its row on the command-line page and is shown in use."""
    commands = cli_commands()
    assert len(commands) >= 15 and "predict" in commands
    table, text = (DOCS / "command-line.md").read_text(), documentation_text()
    assert [c for c in commands if f"| `{c}` |" not in table or f"fer-ensemble {c}" not in text] == []


def test_every_endpoint_is_documented() -> None:
    """Every route the web app declares (its routers' routes, asked of the routers themselves) is
    on the web page, with its method."""
    need("fastapi")
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from fer_ensemble.server.app import api, pages

    routes = []
    for route in [*api.routes, *pages.routes]:
        if isinstance(route, APIWebSocketRoute):
            routes.append(f"WS {route.path}")
        elif isinstance(route, APIRoute):
            routes += [f"{method} {route.path}" for method in sorted(route.methods - {"HEAD"})]
    assert len(routes) >= 7 and "POST /v1/predict" in routes and "WS /v1/stream" in routes
    page = (DOCS / "web.md").read_text()
    assert [route for route in routes if route not in page] == []


def public_names(path: Path) -> list[str]:
    """The names a module defines at its top level (functions, classes, assignments), not those it
    imports, without a leading underscore."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in names if not name.startswith("_")]


def library_modules() -> dict[str, Path]:
    """Every module of the package except the commands and the web app, by dotted name."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] not in NOT_IN_THE_REFERENCE:
            modules[".".join(["fer_ensemble", *(p for p in parts if p != "__init__")])] = path
    return modules


def test_the_public_module_layer_is_known() -> None:
    """The reference leaves out exactly the command and web layers; the others are all in it."""
    assert {"fer_ensemble.runtime.recognizer", "fer_ensemble.prior", "fer_ensemble.data.ferplus",
            "fer_ensemble.batch.engines"} <= set(library_modules())
    assert not any(name.startswith(("fer_ensemble.apps", "fer_ensemble.server")) for name in library_modules())
    assert "EmotionRecognizer" in public_names(PACKAGE / "runtime" / "recognizer.py")


# --- the built site ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mkdocs build --strict`` into a temporary folder: any broken link, missing anchor, missing
    page or unresolved reference fails it."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        skip_or_fail("the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    return out


def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    pages = [p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")]
    missing = [str(p) for p in pages
               if not (site / ("index.html" if p.name == "index" and p.parent == Path() else
                               p.parent / ("" if p.name == "index" else p.name) / "index.html")).is_file()]
    assert len(pages) >= 20 and missing == []
    for name in ("CHANGELOG.md", "CONTRIBUTING.md"):  # included, not copied
        first = (REPO / name).read_text().splitlines()[0].lstrip("# ")
        assert first in (site / Path(name).stem.lower() / "index.html").read_text(), name


def built_page(site: Path, page: Path) -> str:
    """The text of a docs page as the built site shows it, HTML tags taken out."""
    name = page.relative_to(DOCS).with_suffix("")
    path = site / (name.parent if name.name == "index" else name) / "index.html"
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_the_site_shows_each_included_example(site: Path) -> None:
    """The snippets extension put each docs_src/ file into its page: every line of it is on the
    built page, and no include line is left in the text."""
    shown = []
    for page in sorted(DOCS.rglob("*.md")):
        targets = INCLUDE.findall(page.read_text())
        text = built_page(site, page)
        for target in (t for t in targets if t.startswith("docs_src/")):
            lines = [line for line in (REPO / target).read_text().splitlines() if line.strip()]
            assert [line for line in lines if line not in text] == [], f"{page.name}: {target}"
            shown.append(target)
        assert not re.search(r'^\s*--8<-- "', text, re.M), page.name  # an include left as written
    assert sorted(set(shown)) == [f"docs_src/{name}" for name in EXAMPLES]


def test_the_api_reference_covers_every_public_name(site: Path) -> None:
    ids = set()
    for page in (site / "reference").rglob("*.html"):
        ids |= set(re.findall(r'id="(fer_ensemble[\w.]*)"', page.read_text()))
    expected = [name for module, path in library_modules().items()
                for name in (module, *(f"{module}.{n}" for n in public_names(path)))]
    assert len(expected) > 200
    assert [name for name in expected if name not in ids] == []
    import fer_ensemble
    import fer_ensemble.data
    import fer_ensemble.runtime

    for package in (fer_ensemble, fer_ensemble.runtime, fer_ensemble.data):  # re-exported names
        assert [n for n in package.__all__ if not any(i == f"{package.__name__}.{n}" or i.endswith(f".{n}")
                                                      for i in ids)] == [], package.__name__


# --- the pictures -----------------------------------------------------------------------------

PICTURES = {  # page: the pictures it must show
    "index.md": ["demo-video-frame.jpg", "demo-photo.jpg"],
    "video.md": ["timeline.png", "demo-video-frame.jpg", "enrolment-webcam.jpg"],
    "web.md": ["enrolment-page.jpg"],
    "photos.md": ["geometry.jpg"],
    "accuracy.md": ["confusion-ferplus-test.png", "confusion-ckplus48.png", "confusion-taiwan-posed.png"],
    "comparison.md": ["peers.png"],
}


def test_the_pictures_are_drawn_by_the_script_and_shown() -> None:
    script = (REPO / "scripts" / "docs_figures.py").read_text()
    assets = sorted(p.name for p in ASSETS.iterdir())
    assert sorted({n for names in PICTURES.values() for n in names} | {"demo-photo.jpg"}) == assets
    assert [name for name in assets if f"``{name}``" not in script] == []  # the script draws each
    for page, names in PICTURES.items():
        text = (DOCS / page).read_text()
        assert [n for n in names if f"](assets/{n})" not in text] == [], page
    assert "](docs/assets/demo-video-frame.jpg)" in README.read_text()
    assert sum((ASSETS / name).stat().st_size for name in assets) < 600 * 1024
    assert (ASSETS / "peers.png").read_bytes() == (REPO / "benchmarks/peers/results/peers.png").read_bytes()


def test_the_figure_script_draws_every_picture(ckplus48: Path, taiwan_posed: Path, tmp_path: Path) -> None:
    """scripts/docs_figures.py runs from a clean folder (about 30 s: the demo, two evaluations)."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "docs_figures.py"), "--out", str(tmp_path),
                    "--ckplus48", str(ckplus48), "--taiwan", str(taiwan_posed)],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in ASSETS.iterdir())
    assert all(p.stat().st_size > 10_000 for p in tmp_path.iterdir())


# --- the site in a browser, offline -----------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not IN_CI, reason="Debian chromium is not installed")
def test_the_site_opens_offline_with_navigation_and_search(site: Path, tmp_path: Path) -> None:
    """The built site over plain HTTP (search needs it), every request outside it refused: the
    home page's pictures load, the navigation leads to another page, and a search finds it."""
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    outside: list[str] = []
    errors: list[str] = []

    def only_the_site(route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", only_the_site)
            page.goto(f"{url}/")
            page.wait_for_load_state("load")
            title = page.title()
            pictures = page.evaluate("() => [...document.querySelectorAll('article img')].map(i => i.naturalWidth)")
            page.screenshot(path=str(tmp_path / "home.png"))
            page.locator("nav.md-nav--primary a.md-nav__link", has_text="Accuracy").first.click()
            page.wait_for_url(f"{url}/accuracy/")
            heading = page.inner_text("article h1")
            page.click("input.md-search__input")
            page.keyboard.type("resting face")
            page.wait_for_selector(".md-search-result__item", timeout=30_000)
            results = page.locator(".md-search-result__item").all_inner_texts()
            page.screenshot(path=str(tmp_path / "search.png"))
            page.locator(".md-search-result__item a").first.click()
            page.wait_for_load_state("load")
            landed = page.url
            browser.close()
    finally:
        server.shutdown()
    assert "fer-ensemble" in title and len(pictures) >= 2 and min(pictures) > 0
    assert heading.startswith("Accuracy")
    assert results and any("resting face" in r.lower() for r in results), results[:3]
    assert landed.startswith(url) and landed.rstrip("/") != f"{url}/accuracy"
    assert outside == [] and errors == []
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_the_gpu_session_tables_are_its_recorded_figures() -> None:
    """docs/training.md's 2026-11-30 tables (why the GPU members were not shipped) are the figures
    train_gpu.py and compare_ensembles.py recorded in benchmarks/results/gpu-2026-11-30.json."""
    recorded = json.loads((REPO / "benchmarks" / "results" / "gpu-2026-11-30.json").read_text())
    text = (REPO / "docs" / "training.md").read_text()
    rows = {"shipped (kept)": "shipped", "both new": "new", "new ResNet50, shipped MobileNetV2": "new-resnet50",
            "shipped ResNet50, new MobileNetV2": "new-mobilenet_v2"}
    for label, key in rows.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
        shown = [float(x) for x in re.findall(r"\d+\.\d\d", line)]
        figures = recorded["compare"][key]
        expected = [figures[c] for c in ("FER+ Test", "adapt acc.", "adapt macro recall", "anger", "disgust", "fear",
                                         "resting face before", "resting face after", "CK+48 per sequence")]
        assert shown == [round(100 * v, 2) for v in expected], label
    for name, metrics in recorded["runs"].items():
        best = max(r["valid_accuracy"] for r in metrics)
        assert f"{100 * best:.2f} %" in text, name


@pytest.mark.parametrize("record, shipped, candidate, member", [
    ("imagenet-2026-12-06.json", "shipped ensemble (kept)", "shipped ResNet50 + ImageNet MobileNetV2",
     "fine-tuned from ImageNet"),
    ("imagenet-10-epochs-2026-12-06.json", "shipped ensemble (kept)",
     "shipped ResNet50 + ImageNet MobileNetV2, 10 epochs", "ImageNet, 10 epochs on the CPU"),
    ("imagenet-128px-2026-12-07.json", "shipped ensemble (kept), 2026-12-07",
     "shipped ResNet50 + ImageNet MobileNetV2, 128 px", "ImageNet, 128 px, 3 epochs on the CPU")])
def test_the_imagenet_tables_are_their_recorded_figures(record: str, shipped: str, candidate: str, member: str) -> None:
    """docs/training.md's ImageNet fine-tune tables (3 epochs, 10, then 3 at 128 px) are the figures
    export, fit-ensemble and compare_ensembles.py recorded in benchmarks/results/."""
    recorded = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    text = (REPO / "docs" / "training.md").read_text()
    for label, key in ((shipped, "shipped"), (candidate, "candidate")):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
        row = recorded["compare"][key]
        assert [float(x) for x in re.findall(r"\d+\.\d\d", line)] == [round(100 * v, 2) for v in row.values()], label
    for label, key in (("shipped: from scratch", "shipped"), (member, "candidate")):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label}"))
        figures = recorded["export"][key]
        expected = [figures[v][s] for s in ("valid", "test") for v in ("fp32", "int8")]
        assert [float(x) for x in re.findall(r"\d+\.\d\d", line)] == [round(100 * v, 2) for v in expected], label


def test_compare_ensembles_remeasures_the_shipped_row(shipped_comparison: dict) -> None:
    """scripts/compare_ensembles.py, run on the shipped ensemble (conftest's ``shipped_comparison``,
    shared with the tests of each command's own figures), prints the row the GPU session's table
    keeps for it, and with ``--enrol 2 --geometry`` the profiles' columns."""
    measured = shipped_comparison["row"]
    recorded = json.loads((REPO / "benchmarks" / "results" / "gpu-2026-11-30.json").read_text())["compare"]["shipped"]
    assert {k: round(measured[k], 4) for k in recorded} == {k: round(v, 4) for k, v in recorded.items()}
    assert round(measured["taiwan-posed"], 4) == 0.4944  # README's 49.4 %, end to end
    assert shipped_comparison["stdout"].splitlines()[2].startswith("| shipped | 88.75 |")
    assert set(shipped_comparison["raw"]) == {"ferplus-test", "ferplus-valid", "adapt", "resting-face",
                                              "taiwan-posed", "ckplus48", "enrol"}
    profiles = shipped_comparison["raw"]["enrol"]  # evaluate --enrol 2 --geometry: both readings, same draws
    assert measured["enrol 2"] == profiles["embeddings_only"]["per_image"]["accuracy"]
    assert measured["enrol 2 + blendshapes"] == profiles["per_image"]["accuracy"]

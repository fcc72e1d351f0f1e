"""The web app against a real server on loopback: HTTP, WebSocket, limits, token, fuzzing, a browser."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from support import HEIC, REPO, heic_photo, huge_png, need, run_cli

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.runtime.enrolment import ENROL_ORDER
from fer_ensemble.runtime.profile import Profile
from fer_ensemble.runtime.recognizer import EmotionRecognizer

need("fastapi")
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """``fer-ensemble serve`` on loopback with the tiny ensemble, a token, a 3 MB upload limit and
    an empty TMPDIR to prove that nothing is written to disk."""
    from support import tiny_member

    folder = tmp_path_factory.mktemp("serve")
    tiny_member(folder, "small", 16, 0)
    tiny_member(folder, "large", 24, 1)
    (folder / "ensemble.json").write_text(json.dumps({"members": [
        {"card": "small.json", "weight": 0.5}, {"card": "large.json", "weight": 0.5}],
        "prior": {"class_prior": [0.34, 0.27, 0.12, 0.14, 0.09, 0.009, 0.028, 0.009], "strength": 1.0}}))
    tmpdir = tmp_path_factory.mktemp("server-tmp")
    log = folder / "serve.log"
    with start_server(folder / "ensemble.json", log, "--token", TOKEN, "--max-upload-mb", "3", "--max-fps", "5",
                      "--max-megapixels", "60", env={"TMPDIR": str(tmpdir)}) as (base, port):
        yield {"url": base, "port": port, "tmpdir": tmpdir, "ensemble": folder / "ensemble.json", "log": log}


@pytest.fixture(scope="module")
def app(server):
    """The same app in this process, through FastAPI's TestClient: validation, priors and the
    413/415/422 mapping are tested here, without a socket or a clock."""
    from fastapi.testclient import TestClient

    from fer_ensemble.server.app import ServerSettings, create_app

    settings = ServerSettings(ensemble=str(server["ensemble"]), token=TOKEN, max_upload_bytes=3 * 2**20,
                              max_pixels=60_000_000)
    with TestClient(create_app(settings), headers=AUTH) as client:
        yield client


def post(client, data: bytes, name: str = "image.jpg", **options):
    return client.post("/v1/predict", files={"file": (name, data)}, **options)


@contextmanager
def start_server(ensemble: Path, log: Path, *options: str, env: dict | None = None):
    """``fer-ensemble serve`` on a free loopback port, its output in ``log``; yields (url, port)."""
    port = free_port()
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "fer_ensemble.cli", "serve", "--port", str(port), "--ensemble", str(ensemble),
             *options], cwd=REPO, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", headers=AUTH, timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start:\n" + log.read_text()
        time.sleep(0.2)
    try:
        yield base, port
    finally:
        process.terminate()
        process.wait(timeout=10)


def upload(server, data: bytes, name: str = "image.jpg", headers=AUTH) -> httpx.Response:
    return httpx.post(server["url"] + "/v1/predict", files={"file": (name, data)}, headers=headers, timeout=30)


def test_predict_matches_the_cli(server) -> None:
    photo = SAMPLES / "grace_hopper.jpg"
    response = upload(server, photo.read_bytes())
    assert response.status_code == 200
    served = response.json()
    assert (served["width"], served["height"]) == (512, 600)
    cli = json.loads(run_cli("predict", str(photo), "--json", "--ensemble", str(server["ensemble"])).stdout)
    assert served["faces"] == cli["faces"]  # every field, relative and held included


def test_a_request_chooses_its_class_prior(app) -> None:
    photo = (SAMPLES / "grace_hopper.jpg").read_bytes()
    default = post(app, photo).json()["faces"][0]["probabilities"]
    ferplus = post(app, photo, params={"prior": "ferplus"})
    assert ferplus.status_code == 200
    native = ferplus.json()["faces"][0]["probabilities"]
    assert native["neutral"] > default["neutral"] and native["contempt"] < default["contempt"]
    for bad in ("2", "balanced"):
        response = post(app, photo, params={"prior": bad})
        assert response.status_code == 422 and "prior" in response.json()["detail"]


def test_the_token_guards_the_models_in_a_header_only(server) -> None:
    """/healthz and /v1/* need the header (a ?token= query is refused: it would reach logs and
    histories); the page, /docs and /openapi.json hold no data and load without it."""
    for path in ("/healthz", "/v1/model"):
        assert httpx.get(server["url"] + path, timeout=10).status_code == 401, path
        assert httpx.get(server["url"] + path + "?token=" + TOKEN, timeout=10).status_code == 401, path
    assert upload(server, (SAMPLES / "astronaut.png").read_bytes(), headers={}).status_code == 401
    for path in ("/", "/docs", "/openapi.json"):
        response = httpx.get(server["url"] + path, timeout=10)
        assert response.status_code == 200 and TOKEN not in response.text, path
    schema = httpx.get(server["url"] + "/openapi.json", timeout=10).json()  # /docs' Authorize button
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    model = httpx.get(server["url"] + "/v1/model", headers=AUTH, timeout=10).json()
    assert [m["name"] for m in model["members"]] == ["small", "large"]


def test_no_served_log_or_page_contains_the_token(server) -> None:
    """The WebSocket's ?token= (the one place a query token is taken) and a refused HTTP one are
    written as token=[redacted] in uvicorn's logs; /docs no longer echoes a token it is given."""
    import websockets

    async def connect() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream?prior=uniform&token={TOKEN}") as ws:
            await ws.send(cv2.imencode(".jpg", cv2.imread(str(SAMPLES / "grace_hopper.jpg")))[1].tobytes())
            assert "faces" in json.loads(await asyncio.wait_for(ws.recv(), 30))

    asyncio.run(connect())
    assert httpx.get(server["url"] + f"/healthz?token={TOKEN}", timeout=10).status_code == 401
    assert TOKEN not in httpx.get(server["url"] + f"/docs?token={TOKEN}", timeout=10).text
    time.sleep(0.5)  # let the log lines reach the file
    log = server["log"].read_text()
    assert "token=[redacted]" in log and '"GET /healthz?token=[redacted] HTTP/1.1" 401' in log
    assert "/v1/stream?prior=uniform&token=[redacted]" in log
    assert TOKEN not in log


def test_bad_uploads_get_4xx_with_a_reason(app) -> None:
    too_large = post(app, b"\xff" * (3 * 2**20 + 10))
    assert too_large.status_code == 413 and "larger than" in too_large.json()["detail"]
    not_image = post(app, b"this is not an image", "notes.txt")
    assert not_image.status_code == 415 and "not a decodable image" in not_image.json()["detail"]
    assert post(app, b"", "empty.jpg").status_code == 415
    truncated = (SAMPLES / "astronaut.png").read_bytes()[:5000]
    assert post(app, truncated, "cut.png").status_code == 415  # libpng: "input buffer is incomplete"
    for wrong in ({}, {"data": {"file": "abc"}}):  # no file at all, a form field instead of a file
        response = app.post("/v1/predict", **wrong)
        assert response.status_code == 422 and response.json() == {
            "detail": "send the image as the multipart/form-data field 'file' (curl -F file=@photo.jpg)"}
    photo = (SAMPLES / "grace_hopper.jpg").read_bytes()
    two = app.post("/v1/predict", files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))])
    assert two.status_code == 422 and two.json() == {"detail": "one image per request; 2 'file' parts were sent"}
    assert post(app, truncated, headers={"Authorization": "Bearer wrong"}).status_code == 401



def test_limits_are_told_in_the_units_of_their_flags(app) -> None:
    """Robustness issue, item 20: the 413 says MB, as --max-upload-mb does (it said bytes), and
    /v1/model gives the server's limits in the same units."""
    too_large = post(app, b"\xff" * (3 * 2**20 + 10))
    assert too_large.json() == {"detail": "upload larger than 3 MB (--max-upload-mb)"}
    assert app.get("/v1/model").json()["limits"] == {"max_upload_mb": 3, "max_megapixels": 60}


def test_a_bad_resting_face_value_is_echoed_cut_short() -> None:
    """Robustness issue, item 20: the reply to a malformed control message echoes the resting_face
    value sent, as docs/web.md says (it was null), cut to 40 characters and always strict JSON."""
    from fer_ensemble.errors import json_text
    from fer_ensemble.server.controls import control_reply

    for sent, echo in (("wink", "wink"), ("x" * 1000, "x" * 40), (7, "7"), ([1, 2], "[1, 2]"),
                       (float("nan"), "NaN"), (10**100, "1" + "0" * 39), (None, None), (True, True)):
        reply = control_reply(None, {"resting_face": sent})
        assert reply["resting_face"] == echo and "'take' or 'clear'" in reply["error"], (sent, reply)
        json_text(reply)  # never NaN nor a huge number
    assert control_reply(None, {"track_id": 1})["resting_face"] is None  # nothing sent, nothing echoed

def test_the_too_large_answer_reaches_a_real_client(server) -> None:
    """One end-to-end 413 over a socket (the in-process tests above cover the rest of the mapping)."""
    too_large = upload(server, b"\xff" * (3 * 2**20 + 10))
    assert too_large.status_code == 413 and "larger than" in too_large.json()["detail"]


def test_nothing_is_written_to_disk(server) -> None:
    rng = np.random.default_rng(0)
    big = cv2.imencode(".png", rng.integers(0, 255, (900, 900, 3), np.uint8))[1].tobytes()
    assert 2**20 < len(big) < 3 * 2**20  # above Starlette's default in-memory spool size
    before = {p.name: p.stat().st_size for p in server["tmpdir"].iterdir()}  # ONNX Runtime's .ses
    assert upload(server, big, "big.png").status_code == 200
    assert {p.name: p.stat().st_size for p in server["tmpdir"].iterdir()} == before


def test_cors_is_closed_by_default(server) -> None:
    response = httpx.options(server["url"] + "/v1/predict", timeout=10, headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers


def test_websocket_answers_the_newest_frame_and_caps_the_rate(server) -> None:
    import websockets

    frame = (SAMPLES / "grace_hopper.jpg").read_bytes()

    async def talk() -> list[dict]:
        url = f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}"
        async with websockets.connect(url) as ws:
            for _ in range(20):  # a burst far above the 5 fps cap
                await ws.send(frame)
            results = []
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                try:
                    results.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
                except asyncio.TimeoutError:
                    pass
            return results

    results = asyncio.run(talk())
    assert 1 <= len(results) <= 3  # stale frames were dropped, not queued
    assert results[-1]["frame"] == 20 and results[-1]["dropped"] >= 17
    assert results[-1]["faces"][0]["track_id"] is not None



def test_a_refused_stream_says_why(server) -> None:
    """A refused WebSocket is accepted and closed with 1008 and its reason (closed before accepting,
    clients saw a bare HTTP 403 whatever was wrong); a browser page of another site is refused
    (browsers apply no CORS to WebSockets), the server's own page and programs without an Origin
    are not."""
    import websockets

    async def close_of(query: str, **options) -> tuple[int, str]:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream{query}", **options) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)
        return closed.value.rcvd.code, closed.value.rcvd.reason

    for query, options, reason in (
            ("", {}, "missing or wrong token (?token=, or the page's token field)"),
            (f"?token={TOKEN}&prior=banana", {}, "prior"),
            (f"?token={TOKEN}&auto_resting_face=maybe", {}, "auto_resting_face: "),
            (f"?token={TOKEN}", {"origin": "http://evil.example"},
             "a page from http://evil.example may not open this stream (serve --cors-origin)")):
        code, said = asyncio.run(close_of(query, **options))
        assert code == 1008 and reason in said, (query, said)

    async def answered(origin: str) -> dict:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}", origin=origin) as ws:
            await ws.send((SAMPLES / "grace_hopper.jpg").read_bytes())
            return json.loads(await asyncio.wait_for(ws.recv(), 30))

    assert "faces" in asyncio.run(answered(f"http://127.0.0.1:{server['port']}"))  # the server's own page


def test_the_web_api_is_its_snapshot_so_a_change_is_noticed(tmp_path: Path) -> None:
    """tests/data/api.json holds each REST endpoint's parameters, bodies and answers' fields (from the
    OpenAPI schema, not its rendering) and the WebSocket routes' query parameters; an API change fails
    here until the snapshot is rewritten (scripts/api_snapshot.py) with it."""
    def check(snapshot: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/api_snapshot.py", "--check", "--snapshot", str(snapshot)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    recorded = REPO / "tests" / "data" / "api.json"
    assert check(recorded).returncode == 0, check(recorded).stderr
    changed = json.loads(recorded.read_text())
    del changed["rest"]["GET /v1/model"]
    changed["rest"]["POST /v1/predict"]["responses"]["200"]["faces"][0]["mood"] = "string"
    changed["websockets"]["/v1/stream"].remove("geometry")
    (tmp_path / "api.json").write_text(json.dumps(changed))
    result = check(tmp_path / "api.json")
    assert result.returncode == 1 and "/rest/GET /v1/model: added" in result.stderr, result.stderr
    assert "/rest/POST /v1/predict/responses/200/faces" in result.stderr
    assert "/websockets//v1/stream" in result.stderr and "scripts/api_snapshot.py" in result.stderr


def test_openapi_fuzzing_finds_no_server_error(server) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", server["url"] + "/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "25", "-H", f"Authorization: Bearer {TOKEN}",
         "--generation-deterministic", "--request-timeout", "20"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def write_y4m(path: Path, image: np.ndarray, frames: int = 30) -> None:
    """A raw YUV4MPEG2 clip Chromium can play as a fake webcam."""
    height, width = image.shape[:2]
    yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_browser_page_draws_a_labelled_face_and_the_docs_render_offline(server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit

    camera = tmp_path / "camera.y4m"
    write_y4m(camera, fit(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), 640, 480))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server['url']}/#token={TOKEN}")  # the page keeps it; the URL drops it
        try:
            page.wait_for_selector("#faces li[data-label]", timeout=30_000)
        except Exception:  # say what the page said
            raise AssertionError(f"status {page.inner_text('#status')!r}, errors {errors}") from None
        label = page.get_attribute("#faces li[data-label]", "data-label")
        drawn = page.evaluate("""() => {
            const c = document.getElementById('overlay');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let painted = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
            return painted;
        }""")
        status = page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "page.png"))
        # the photo view (issue 22, item 17): a 1536 px photo whose face runs off its top edge,
        # shown in the page's column; its label stays on the photo, readable, its list beside it
        photo = tmp_path / "top-edge.png"
        top_cut = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))[130:]
        cv2.imwrite(str(photo), cv2.resize(top_cut, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC))
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#photo-faces li[data-label]", timeout=30_000)
        labels = json.loads(page.get_attribute("#photo", "data-labels"))
        shown = page.evaluate("() => [document.getElementById('photo').clientWidth, "
                              "document.getElementById('photo').clientHeight]")
        beside = page.evaluate("() => document.getElementById('photo-faces').getBoundingClientRect().top > "
                               "document.getElementById('photo').getBoundingClientRect().bottom - 1")
        page.screenshot(path=str(tmp_path / "photo-view.png"), full_page=True)
        page.set_input_files("#file", str(HEIC))  # the server reads HEIC, Chromium cannot show it
        page.wait_for_selector("#photo-faces li[data-label]", timeout=30_000)
        heic_status = page.inner_text("#photo-status")
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server["url"])
                   else route.abort())  # the API docs must render with no network beyond our server
        address = page.url
        page.goto(f"{server['url']}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        documented = page.locator(".opblock-summary-path").all_inner_texts()
        authorize = page.locator("button.authorize").count()  # the token, sent as a header
        browser.close()
    assert label in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert drawn > 500  # the box and its label are on the overlay
    assert status == "live" and TOKEN not in address
    assert len(labels) == 1 and shown[0] < 1536  # one face; the photo is shown scaled down
    x, y, w, h = labels[0]
    assert y >= 0 and x >= 0 and x + w <= shown[0] + 1 and h >= 20, labels  # on the photo, 22 px high
    assert beside  # the photo's faces are listed under the photo, not under the camera
    assert heic_status == "photo: this browser cannot show it; its faces are listed"
    assert any("/v1/predict" in path for path in documented) and authorize >= 1


PAGE = REPO / "src" / "fer_ensemble" / "server" / "static" / "index.html"


def page_colours() -> tuple[dict[str, str], str, str]:
    """The page's emotion colours (``COLORS``), its labels' band (``LABEL_BAND``) and its background."""
    import re

    html = PAGE.read_text()
    colours = dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', re.search(r"const COLORS = \{(.*?)\};", html, re.S)[1]))
    band = re.search(r'const LABEL_BAND = "(#[0-9a-f]{6})"', html)[1]
    background = re.search(r"body \{[^}]*background: (#[0-9a-f]{3,6});", html)[1]
    return colours, band, background


def test_every_label_colour_reads_on_its_band_at_wcag_aa() -> None:
    """Each emotion's label text on the page's opaque label band, and its legend on the page's
    background: at least 4.5:1 (sadness was 2.7:1 on the old translucent black band over #111)."""
    from fer_ensemble.runtime.drawing import contrast_ratio

    def bgr(colour: str) -> tuple[int, int, int]:
        digits = colour[1:] if len(colour) == 7 else "".join(c * 2 for c in colour[1:])
        red, green, blue = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
        return blue, green, red

    colours, band, background = page_colours()
    assert set(colours) == {"neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"}
    ratios = {name: round(min(contrast_ratio(bgr(c), bgr(band)), contrast_ratio(bgr(c), bgr(background))), 2)
              for name, c in colours.items()}
    assert min(ratios.values()) >= 4.5, ratios


def open_page(playwright, server, viewport: dict, camera: Path | None = None, query: str = ""):
    """Chromium (Debian's) on the served page (``query``: its URL's, e.g. "?geometry=true"), with a
    fake webcam playing ``camera`` or none."""
    fake = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"] if camera else []
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", *fake])
    page = browser.new_page(viewport=viewport)
    page.goto(f"{server['url']}/{query}#token={TOKEN}")
    return browser, page


def drop_photo(page, path: Path) -> list[list[float]]:
    """The photo given to the page's file input: its drawn labels' rectangles (screen pixels)."""
    page.evaluate("() => document.getElementById('photo-status').removeAttribute('data-kind')")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#photo-status[data-kind]:not([data-kind=busy])", timeout=60_000)
    return json.loads(page.get_attribute("#photo", "data-labels") or "[]")


def overlapping(rects: list[list[float]]) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(rects) for j, b in enumerate(rects[:i])
            if a[0] < b[0] + b[2] - 0.5 and b[0] < a[0] + a[2] - 0.5 and a[1] < b[1] + b[3] - 0.5
            and b[1] < a[1] + a[3] - 0.5]


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_the_page_on_a_phone_and_a_group_photos_labels_apart(server, faces_dir: Path) -> None:
    """At 375x800 (a phone): no horizontal scroll, the whole header on screen; a group photo of 13
    faces, on the phone and on a desktop: every face listed, no label over another (the numbered
    list names a face whose label finds no room on a phone), each list line starting with its
    label's key."""
    from playwright.sync_api import sync_playwright

    group = faces_dir / "nasa_s131e010010_group_portrait.jpg"
    seen = {}
    with sync_playwright() as playwright:
        for width, height in ((375, 800), (1280, 800)):
            browser, page = open_page(playwright, server, {"width": width, "height": height})
            page.wait_for_selector("#status[data-kind]", timeout=30_000)  # no webcam: said so
            labels = drop_photo(page, group)
            seen[width] = page.evaluate("""() => ({
                scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                header: [...document.querySelectorAll('header > *')].map(e => {
                    const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; }),
                keys: [...document.querySelectorAll('#photo-faces li')].map(li => li.dataset.key),
                texts: [...document.querySelectorAll('#photo-faces li')].map(li => li.innerText),
                photo: document.getElementById('photo').getBoundingClientRect().right})""") | {"labels": labels}
            browser.close()
    for width, page in seen.items():
        assert page["scroll"] <= page["inner"] == width and page["photo"] <= width, page
        assert all(0 <= left and right <= width and 0 <= top and bottom <= 800
                   for left, right, top, bottom in page["header"]), page["header"]
        faces = len(page["keys"])  # 11 of its 13 found upright (docs/detection.md)
        assert faces >= 10 and page["keys"] == [str(i + 1) for i in range(faces)], page["keys"]
        assert all(text.startswith(key + " ") for key, text in zip(page["keys"], page["texts"]))
        assert 0 < len(page["labels"]) <= faces and not overlapping(page["labels"]), page["labels"]
    assert len(seen[1280]["labels"]) == len(seen[1280]["keys"])  # on a desktop every face has its label


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_a_failed_photo_clears_the_last_one_and_shows_an_error_not_live(server, tmp_path: Path) -> None:
    """A photo the server refuses after one it read: the old picture, labels and list are gone,
    and the error says "error" in words, in a colour and weight of its own, not "live"'s."""
    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit

    camera = tmp_path / "camera.y4m"
    write_y4m(camera, fit(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), 640, 480))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    style = "e => [getComputedStyle(e).color, getComputedStyle(e).fontWeight, getComputedStyle(e).borderLeftStyle]"
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server, {"width": 1280, "height": 800}, camera)
        page.wait_for_selector("#status[data-kind=live]", timeout=30_000)
        live = page.eval_on_selector("#status", style)
        assert drop_photo(page, SAMPLES / "grace_hopper.jpg") and page.locator("#photo-faces li").count() == 1
        drop_photo(page, broken)
        after = page.evaluate("""() => ({
            width: document.getElementById('photo').width, labels: document.getElementById('photo').dataset.labels,
            items: document.querySelectorAll('#photo-faces li').length,
            kind: document.getElementById('photo-status').dataset.kind,
            text: document.getElementById('photo-status').innerText})""")
        error = page.eval_on_selector("#photo-status", style)
        browser.close()
    assert after["width"] == 0 and after["labels"] is None and after["items"] == 0, after
    assert after["kind"] == "error" and after["text"].startswith("error: photo: "), after
    assert error[0] != live[0] and error[1:] != live[1:], (error, live)
    red, green, blue = (int(v) for v in error[0][error[0].index("(") + 1:-1].split(",")[:3])
    assert red > 200 and red > green > blue, error  # orange-red


# --- hostile input (issue "Robustness") ------------------------------------------------------

@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_the_page_draws_a_held_face_dimmed_and_dashed(server) -> None:
    """The page's drawFaces draws a face with ``held: true`` (missed by the detector in this frame)
    fainter than a live one: dimmed, its box dashed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{server['url']}/#token={TOKEN}")
        ink = page.evaluate("""() => [false, true].map(held => {
            const c = document.createElement('canvas'); c.width = 300; c.height = 300;
            const ctx = c.getContext('2d');
            drawFaces(ctx, [{box: [50, 80, 150, 150], label: 'happiness', score: 0.9, track_id: 1,
                             relative: false, held}], 1, 1);
            const data = ctx.getImageData(0, 0, c.width, c.height).data;
            let alpha = 0;
            for (let i = 3; i < data.length; i += 4) alpha += data[i];
            return alpha;
        })""")
        browser.close()
    live, held = ink
    assert 0 < held < 0.6 * live, ink


def test_pixel_count_is_checked_before_decoding(app, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused from the header: OpenCV's decoder is never called (it would fail the test)."""
    import fer_ensemble.server.limits as limits

    def no_decoding(*_):
        raise AssertionError("the image was decoded")

    data = huge_png()
    assert len(data) < 3 * 2**20
    monkeypatch.setattr(limits.cv2, "imdecode", no_decoding)
    for payload in (data, data[:200]):  # the whole file, and its header alone
        response = post(app, payload, "huge.png")
        assert response.status_code == 413 and "megapixels" in response.json()["detail"]


def test_a_chunked_upload_without_length_gets_413(server) -> None:
    """70 MB streamed with Transfer-Encoding: chunked, no Content-Length: counted as it arrives."""
    boundary = "xyz"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode()
        for _ in range(70):
            yield b"\xff" * 2**20

    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as connection:
        connection.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                           f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for part in body():
                connection.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the 70 MB were sent: as it should
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line and b"larger than" in answer, answer[:300]


HEAVY_CLIENTS = """
import sys
from concurrent.futures import ThreadPoolExecutor
import httpx
url, token, path, n = sys.argv[1:5]
data = open(path, "rb").read()
post = lambda _: httpx.post(url + "/v1/predict", files={"file": ("heavy.png", data)},
                            headers={"Authorization": "Bearer " + token}, timeout=120).status_code
with ThreadPoolExecutor(int(n)) as clients:
    print(" ".join(map(str, clients.map(post, range(int(n))))))
"""


def heavy_png(folder: Path, side: int = 6000) -> Path:
    """36 megapixels in about 1 MB: each decode and detection costs a good fraction of a second."""
    path = folder / "heavy.png"
    cv2.imwrite(str(path), np.tile(np.linspace(0, 255, side, dtype=np.uint8), (side, 1)))
    return path


def test_healthz_answers_while_heavy_requests_run(server, tmp_path: Path) -> None:
    """Eight heavy uploads from another process; /healthz probed from this one meanwhile."""
    clients = subprocess.Popen([sys.executable, "-c", HEAVY_CLIENTS, server["url"], TOKEN,
                                str(heavy_png(tmp_path)), "8"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    delays = []
    with httpx.Client(headers=AUTH, timeout=10) as probe:
        while clients.poll() is None or not delays:
            started = time.monotonic()
            assert probe.get(server["url"] + "/healthz").status_code == 200
            delays.append(time.monotonic() - started)
            time.sleep(0.05)
    statuses = clients.stdout.read().split()
    assert set(statuses) <= {"200", "503"} and "200" in statuses
    # answered while the heavy requests were still running, not after them (how fast: a benchmark's
    # business, docs/speed.md "Web API load", not a test's on a shared machine)
    assert len(delays) >= 5, delays


STREAM_CLIENTS = """
import asyncio, json, sys, time
import websockets
url, path, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
frame = open(path, "rb").read()

async def client(opened):
    async with websockets.connect(url) as ws:
        answers, faces = 0, 0
        opened.append(1)
        while len(opened) < count:  # every stream open before any sends
            await asyncio.sleep(0.01)
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            await ws.send(frame)
            try:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                if "retry_after" in answer:  # every worker busy: this frame is skipped, the stream goes on
                    continue
                if "faces" not in answer:
                    return answer
                answers, faces = answers + 1, faces + len(answer["faces"])
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(0.2)
        return answers, faces

async def main():
    opened = []
    results = await asyncio.gather(*(client(opened) for _ in range(count)))
    print(json.dumps(results))

asyncio.run(main())
"""


def test_twenty_streams_at_once_leave_healthz_answering_within_100_ms(server) -> None:
    """Twenty WebSocket clients (another process) open their streams together and send frames at
    the server's 5 fps cap for four seconds; /healthz, probed from this process meanwhile, answers
    every time within 100 ms (issue 34's bar: streams are built and read off the event loop)."""
    import gc

    url = f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}"
    clients = subprocess.Popen([sys.executable, "-c", STREAM_CLIENTS, url, str(SAMPLES / "grace_hopper.jpg"),
                                "20", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    delays = []
    gc.collect()  # the prober's own pauses out of the measure: this process holds the whole suite's heap,
    gc.disable()  # whose full collection can outlast 100 ms (the server is another process; a fresh
    # clone's run once saw one probe of 73 at 166 ms, the others under 25 ms)
    try:
        with httpx.Client(headers=AUTH, timeout=10) as probe:
            while clients.poll() is None:
                started = time.monotonic()
                assert probe.get(server["url"] + "/healthz").status_code == 200
                delays.append(time.monotonic() - started)
                time.sleep(0.05)
    finally:
        gc.enable()
    out, err = clients.communicate()
    assert clients.returncode == 0, err[-2000:]
    results = json.loads(out)
    assert len(results) == 20 and all(isinstance(r, list) and r[0] >= 1 and r[1] >= 1 for r in results), results
    assert len(delays) >= 20 and max(delays) < 0.1, sorted(delays)[-5:]


def test_a_full_worker_pool_answers_503_with_retry_after() -> None:
    import threading

    from fastapi import HTTPException  # noqa: F401 - the server extra is present

    from fer_ensemble.server.limits import Busy, WorkerPool

    pool = WorkerPool(workers=1, queue=1)
    release = threading.Event()

    async def scenario() -> list:
        first = asyncio.ensure_future(pool.run(release.wait))
        second = asyncio.ensure_future(pool.run(release.wait))
        await asyncio.sleep(0.05)
        outcomes = []
        try:
            await pool.run(release.wait)
        except Busy:
            outcomes.append("busy")
        release.set()
        outcomes += await asyncio.gather(first, second)
        outcomes.append(await pool.run(lambda: "after"))
        return outcomes

    assert asyncio.run(scenario()) == ["busy", True, True, "after"]


def test_busy_server_says_when_to_retry(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from support import tiny_member

    tiny_member(tmp_path, "small", 16, 0)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": [{"card": "small.json"}]}))
    heavy = heavy_png(tmp_path).read_bytes()
    with start_server(tmp_path / "ensemble.json", tmp_path / "serve.log", "--concurrency", "1", "--queue", "0") as (
            base, port):
        with ThreadPoolExecutor(4) as clients:
            answers = list(clients.map(lambda _: upload({"url": base}, heavy, "heavy.png", headers={}), range(4)))
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all(a.headers["retry-after"] == "1" for a in busy)
    assert any(a.status_code == 200 for a in answers)


def test_websocket_close_codes_and_frame_limits(server) -> None:
    import websockets

    url = f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}"

    async def closed_by(message) -> tuple[int, str]:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(message)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd.code, closed.value.rcvd.reason

    code, reason = asyncio.run(closed_by("hello"))
    assert code == 1003 and "binary" in reason
    code, reason = asyncio.run(closed_by(b"\xff" * (3 * 2**20 + 10)))
    assert code == 1009 and "larger than" in reason

    async def huge_frame() -> dict:
        async with websockets.connect(url) as ws:
            await ws.send(huge_png())
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert "megapixels" in asyncio.run(huge_frame())["error"]


def test_docs_work_offline_and_the_server_says_where_it_listens(server) -> None:
    page = httpx.get(server["url"] + "/docs", timeout=10)
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert httpx.get(server["url"] + "/docs-assets/" + asset, timeout=10).status_code == 200
    httpx.get(server["url"] + "/healthz", headers=AUTH, timeout=10)
    log = server["log"].read_text()
    assert f"http://127.0.0.1:{server['port']}/" in log and "token required" in log
    assert '"GET /healthz HTTP/1.1" 200' in log  # uvicorn's access log


def test_serve_with_two_worker_processes(tmp_path: Path) -> None:
    from support import tiny_member

    tiny_member(tmp_path, "small", 16, 0)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": [{"card": "small.json"}]}))
    log = tmp_path / "serve.log"
    with start_server(tmp_path / "ensemble.json", log, "--workers", "2") as (base, _):
        answers = [upload({"url": base}, (SAMPLES / "grace_hopper.jpg").read_bytes(), headers={})
                   for _ in range(6)]
        assert all(a.status_code == 200 and len(a.json()["faces"]) == 1 for a in answers)
        deadline = time.monotonic() + 30
        while log.read_text().count("Started server process") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        started = log.read_text().count("Started server process")
    assert started == 2 and "2 process(es)" in log.read_text()


# --- resting face over the WebSocket ---------------------------------------------------------

async def ask(ws, *messages) -> list[dict]:
    """Send ``messages`` at once (bytes: a frame, dict: a control message), then read one answer each."""
    for message in messages:
        await ws.send(json.dumps(message) if isinstance(message, dict) else message)
    return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in messages]


def test_websocket_takes_and_clears_a_resting_face(server) -> None:
    import websockets

    frame = (SAMPLES / "grace_hopper.jpg").read_bytes()

    async def talk() -> dict:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}") as ws:
            [before] = await ask(ws, frame)
            track = before["faces"][0]["track_id"]
            taken, relative = await ask(ws, {"resting_face": "take", "track_id": track}, frame)
            cleared, plain = await ask(ws, {"resting_face": "clear", "track_id": track}, frame)
            taken_all, relative_all = await ask(ws, {"resting_face": "take"}, frame)
            cleared_all, plain_all = await ask(ws, {"resting_face": "clear"}, frame)
        return locals()

    answers = asyncio.run(talk())
    track = answers["track"]
    assert answers["before"]["faces"][0]["relative"] is False
    assert answers["taken"] == {"resting_face": "take", "track_ids": [track]}
    assert answers["relative"]["faces"][0]["relative"] is True
    assert answers["relative"]["faces"][0]["track_id"] == track
    assert answers["cleared"] == {"resting_face": "clear", "track_ids": [track]}
    assert answers["plain"]["faces"][0]["relative"] is False
    assert answers["taken_all"] == {"resting_face": "take", "track_ids": [track]}
    assert answers["relative_all"]["faces"][0]["relative"] is True
    assert answers["cleared_all"] == {"resting_face": "clear", "track_ids": [track]}
    assert answers["plain_all"]["faces"][0]["relative"] is False


def test_websocket_automatic_resting_face() -> None:
    """?auto_resting_face=true (the shipped ensemble, in process): a calm face (Hopper) is read
    against its own calm frames once they cover CALM_S, timed by the frames' arrival (the server
    answers at most max_fps frames a second: 6 frames cover more than 1/6 s), and from then on;
    without it, never."""
    from fastapi.testclient import TestClient

    from fer_ensemble.server.app import ServerSettings, create_app

    frame = (SAMPLES / "grace_hopper.jpg").read_bytes()
    with TestClient(create_app(ServerSettings())) as client:
        def relative_flags(query: str) -> list[bool]:
            with client.websocket_connect("/v1/stream" + query) as ws:
                flags = []
                for _ in range(6):
                    ws.send_bytes(frame)
                    flags.append(ws.receive_json()["faces"][0]["relative"])
                return flags

        flags = relative_flags("?auto_resting_face=true")
        assert not flags[0] and flags[-1] and flags == sorted(flags), flags  # off, then on for good
        assert relative_flags("") == [False] * 6


def test_streams_beyond_max_streams_are_closed_with_1013_and_a_closed_one_frees_its_place(tiny_ensemble: Path) -> None:
    """Each stream is a FaceStream of the shared live recognizer; serve --max-streams caps how many
    are open: one more is accepted and closed at once with 1013 (try again later) and the reason."""
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from fer_ensemble.server.app import ServerSettings, create_app

    frame = (SAMPLES / "grace_hopper.jpg").read_bytes()
    app = create_app(ServerSettings(ensemble=str(tiny_ensemble), max_streams=1))
    with TestClient(app) as client:
        with client.websocket_connect("/v1/stream") as first:
            first.send_bytes(frame)
            assert first.receive_json()["faces"][0]["track_id"] == 1
            with client.websocket_connect("/v1/stream") as second, pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013 and "serve --max-streams" in closed.value.reason
        assert app.state.server.open_streams == 0
        with client.websocket_connect("/v1/stream") as again:
            again.send_bytes(frame)
            assert again.receive_json()["faces"][0]["track_id"] == 1


def test_a_malformed_resting_face_message_gets_an_error_and_the_stream_goes_on(server) -> None:
    import websockets

    frame = (SAMPLES / "grace_hopper.jpg").read_bytes()
    malformed = [({"resting_face": "wink"}, "'take' or 'clear'"),
                 ({"resting_face": "take", "track_id": "1"}, "integer"),
                 ({"resting_face": "take", "track": 1}, "unknown key"), ({"track_id": 1}, "control message"),
                 ({"resting_face": "clear", "track_id": 999}, "no face #999 in view")]

    async def talk() -> tuple[list[dict], dict, dict]:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream?token={TOKEN}") as ws:
            errors = await ask(ws, *(message for message, _ in malformed))
            await ws.send("[1, 2]")  # JSON, but not an object
            not_an_object = json.loads(await asyncio.wait_for(ws.recv(), 10))
            [after] = await ask(ws, frame)
        return errors, not_an_object, after

    errors, not_an_object, after = asyncio.run(talk())
    for reply, (message, expected) in zip(errors, malformed):
        assert expected in reply["error"] and "frame" not in reply, (message, reply)
    assert errors[0]["resting_face"] == "wink" and errors[-1]["resting_face"] == "clear"  # echoed, as documented
    assert "control message" in not_an_object["error"]
    assert after["faces"] and after["faces"][0]["relative"] is False


def test_serve_on_a_port_in_use_is_one_line_and_exit_2() -> None:
    """Issue 22, item 13: not uvicorn's [Errno 98] after a 'listening' banner, and not exit 3."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), check=False, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"fer-ensemble serve: cannot listen on 127.0.0.1:{port} (Address already in use): another server may "
        "be using it; choose another --port (or --host)"]
    result = run_cli("serve", "--host", "192.0.2.1", check=False, timeout=120)  # TEST-NET-1: not this machine
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--host must be an address of this machine" in result.stderr


def test_a_huge_image_is_refused_with_its_own_size() -> None:
    """Issue 22, item 19: a 400-megapixel PNG is called that, not 'more than 179 megapixels'."""
    from fer_ensemble.server.limits import ImageRejected, decode_image

    with pytest.raises(ImageRejected) as refused:
        decode_image(huge_png(20000), 50_000_000)
    assert refused.value.status == 413 and refused.value.detail.startswith("image of 400.0 megapixels")


def test_the_app_changes_no_process_setting_and_shares_one_ensemble_and_detector(tiny_ensemble: Path) -> None:
    """create_app leaves Starlette's class-wide spool size alone (serve sets it, a process setting)
    and the ensemble it is given (a calibration gives the app its own copy); every request shares
    one still recognizer, whatever its ?prior=, and every stream one live recognizer, each
    connection its own FaceStream under its own prior."""
    from starlette.formparsers import MultiPartParser

    from fer_ensemble.runtime.ensemble import Ensemble
    from fer_ensemble.server.app import Recognizers, ServerSettings, create_app

    spool = MultiPartParser.spool_max_size
    create_app(ServerSettings(ensemble=str(tiny_ensemble), max_upload_bytes=50 * 2**20))
    assert MultiPartParser.spool_max_size == spool
    config = json.loads(tiny_ensemble.read_text())
    tiny_ensemble.write_text(json.dumps({**config, "prior": {"class_prior": [0.125] * 8, "strength": 1.0}}))
    ensemble = Ensemble.load(tiny_ensemble)
    app = create_app(ServerSettings(calibration="posed"), ensemble=ensemble)
    served = app.state.server.ensemble
    assert ensemble.calibration is None and served.calibration is not None and served.members is ensemble.members
    recognizers = Recognizers(ensemble)
    assert recognizers.still.ensemble is recognizers.live.ensemble is ensemble
    one, two = recognizers.stream(0.5), recognizers.stream(0.0, auto_resting_face=True)
    assert one.reader is two.reader is recognizers.live and one.tracker is not two.tracker
    assert (one.prior_strength, two.prior_strength, two.options.auto_resting_face) == (0.5, 0.0, True)


def test_two_apps_in_one_process_keep_their_own_settings(tiny_ensemble: Path) -> None:
    """The routes are shared (module-level routers) and read each app's own state
    (``app.state.server``): one app's token or ensemble never leaks into another's."""
    from fastapi.testclient import TestClient

    from fer_ensemble.server.app import ServerSettings, create_app

    guarded = create_app(ServerSettings(ensemble=str(tiny_ensemble), token=TOKEN))
    open_app = create_app(ServerSettings(ensemble=str(tiny_ensemble)))
    assert guarded.state.server.ensemble is not open_app.state.server.ensemble
    with TestClient(guarded) as a, TestClient(open_app) as b:
        assert a.get("/healthz").status_code == 401
        assert a.get("/healthz", headers=AUTH).json()["status"] == "ok"
        assert b.get("/healthz").status_code == 200
        assert [m["name"] for m in b.get("/v1/model").json()["members"]] == ["small", "large"]
        assert "securitySchemes" in a.get("/openapi.json").json().get("components", {})
        assert "securitySchemes" not in b.get("/openapi.json").json().get("components", {})


def test_serve_takes_a_calibration_as_every_app_does() -> None:
    """serve --calibration posed: /v1/predict answers as predict --calibration posed, /v1/model
    names the calibration; a calibration that does not exist is one line and exit 2."""
    from fastapi.testclient import TestClient

    from fer_ensemble.runtime.recognizer import EmotionRecognizer
    from fer_ensemble.server.app import ServerSettings, create_app

    photo = SAMPLES / "grace_hopper.jpg"
    (expected,) = EmotionRecognizer(calibration="posed").predict(cv2.imread(str(photo)))
    (plain,) = EmotionRecognizer().predict(cv2.imread(str(photo)))
    assert expected.probabilities != plain.probabilities
    with TestClient(create_app(ServerSettings(calibration="posed"))) as client:
        (served,) = post(client, photo.read_bytes()).json()["faces"]
        assert client.get("/v1/model").json()["calibration"] is not None
    assert served["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    result = run_cli("serve", "--calibration", "nosuch", check=False, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "fer-ensemble serve: no calibration 'nosuch': give none, posed or a file that adapt wrote"], result.stderr


def test_an_iphone_heic_upload_is_read(app, tmp_path: Path) -> None:
    """HEIC (the heic extra) is decoded as JPEG is, its pixel count checked from its header first;
    a damaged one is 415 with the reason, whatever libheif raised."""
    data = heic_photo(tmp_path / "IMG_0001.heic")
    served = post(app, data, "IMG_0001.heic")
    assert served.status_code == 200 and (served.json()["width"], served.json()["height"]) == (512, 600)
    assert len(served.json()["faces"]) == 1
    damaged = post(app, data[:2000], "cut.heic")
    assert damaged.status_code == 415 and "not a readable HEIC/HEIF photo" in damaged.json()["detail"]
    from fer_ensemble.server.limits import ImageRejected, decode_image

    with pytest.raises(ImageRejected) as refused:
        decode_image(data, 100_000)
    assert refused.value.status == 413 and refused.value.detail.startswith("image of 512x600 = 0.3 megapixels")
    from test_robustness import damaged_copies

    for damaged in damaged_copies(data):  # any kind of libheif error is a 415 with its reason, never a 500
        try:
            decode_image(damaged, 50_000_000)
        except ImageRejected as error:
            assert error.status == 415 and "HEIC" in error.detail, error.detail


def test_who_may_open_the_stream_and_how_a_refusal_is_said() -> None:
    """check_origin: programs (no Origin), the server's own page, --cors-origin sites (a proxy's
    public origin) and '*' pass; other sites, 'null' and another port do not. refuse_websocket
    cuts a long reason to the 123 bytes a close frame carries, never inside a UTF-8 character."""
    from fastapi import WebSocketException
    from starlette.websockets import WebSocketState

    from fer_ensemble.server.app import CLOSE_REASON_BYTES, check_origin, refuse_websocket

    class Socket:
        def __init__(self, **headers: str) -> None:
            self.headers, self.client_state, self.sent = headers, WebSocketState.CONNECTING, []

        async def accept(self) -> None:
            self.sent.append("accept")

        async def close(self, code: int, reason: str) -> None:
            self.sent.append((code, reason))

    host = "127.0.0.1:8000"
    check_origin(Socket(host=host), [])
    check_origin(Socket(origin=f"http://{host}", host=host), [])
    check_origin(Socket(origin="https://fer.example.org", host=host), ["https://fer.example.org"])
    check_origin(Socket(origin="https://any.example", host=host), ["*"])
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        with pytest.raises(WebSocketException):
            check_origin(Socket(origin=origin, host=host), ["https://fer.example.org"])
    socket = Socket()
    asyncio.run(refuse_websocket(socket, WebSocketException(code=1008, reason="é" * 100)))  # 200 bytes
    assert socket.sent == ["accept", (1008, "é" * (CLOSE_REASON_BYTES // 2))]


def shifted_frames(count: int) -> list[bytes]:
    """Grace Hopper's photo as JPEG, moved a little more in each: frames that differ (as a live camera's do)."""
    photo = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    return [cv2.imencode(".jpg", np.roll(photo, (3 * i, 3 * i), axis=(0, 1)))[1].tobytes() for i in range(count)]


def test_a_guided_enrolment_over_the_stream_gives_the_client_its_profile_and_reads_the_face_through_it() -> None:
    """{"enrol": "start"} (one capture per expression, no countdown): every answer carries the
    prompt, the one in which it is done the profile's JSON, and the face is read through it from the
    next frame; redo and cancel answer, and an enrolment option out of bounds is refused."""
    from fastapi.testclient import TestClient

    from fer_ensemble.server.app import ServerSettings, create_app

    frames = shifted_frames(9)
    with TestClient(create_app(ServerSettings(max_fps=0))) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_json({"enrol": "redo"})
            assert ws.receive_json() == {"enrol": "redo", "error": 'no enrolment in progress: send {"enrol": "start"} first'}
            ws.send_json({"enrol": "start", "captures": 99})
            assert ws.receive_json()["error"] == "captures must be a whole number in [1, 10], not 99"
            ws.send_json({"enrol": "start", "captures": 1, "countdown_s": 0})
            assert ws.receive_json() == {"enrol": "start", "steps": 7, "classes": list(ENROL_ORDER)}
            answers = []
            for frame in frames[:7]:
                ws.send_bytes(frame)
                answers.append(ws.receive_json())
            ws.send_bytes(frames[7])
            after = ws.receive_json()
            ws.send_json({"enrol": "cancel"})
            cancelled = ws.receive_json()
    prompts = [a["enrolment"] for a in answers]
    assert [p["expression"] for p in prompts[:-1]] == list(ENROL_ORDER[1:])  # each frame one capture: the next asked
    assert prompts[-1]["phase"] == "done" and prompts[-1]["track_id"] == answers[-1]["faces"][0]["track_id"]
    assert "profile" in answers[-1] and "profile" not in answers[-2] and "enrolment" not in after
    profile = Profile.from_dict(answers[-1]["profile"])
    assert profile.classes == sorted(ENROL_ORDER, key=EMOTIONS.index) and profile.self_check
    assert after["faces"][0]["profiled"] and not answers[0]["faces"][0]["profiled"]
    assert cancelled == {"enrol": "cancel", "error": 'no enrolment in progress: send {"enrol": "start"} first'}


def test_a_profile_is_taken_per_connection_and_per_request_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    """{"profile": json} reads every face of that connection through it (a new connection: not),
    {"profile": null} stops; /v1/predict takes it as a 'profile' part; a damaged or foreign one
    gets an error reply or 422, and nothing is kept after the connection."""
    from fastapi.testclient import TestClient

    from fer_ensemble.server.app import ServerSettings, create_app

    recognizer = EmotionRecognizer()
    frames = shifted_frames(8)
    images = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    profile = recognizer.enrol(images[:7], ["neutral", "happiness", "surprise", "sadness", "anger", "neutral", "fear"])
    data = profile.to_dict()
    with TestClient(create_app(ServerSettings(max_fps=0))) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_json({"profile": data})
            set_reply = ws.receive_json()
            ws.send_bytes(frames[7])
            profiled = ws.receive_json()["faces"][0]
            ws.send_json({"profile": {"format": "something else"}})
            bad = ws.receive_json()
            ws.send_json({"profile": None})
            cleared = ws.receive_json()
            ws.send_bytes(frames[6])
            plain = ws.receive_json()["faces"][0]
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_bytes(frames[7])
            fresh = ws.receive_json()["faces"][0]
        photo = {"file": ("me.jpg", frames[7], "image/jpeg")}
        answered = client.post("/v1/predict", files={**photo, "profile": ("me.json", json.dumps(data), "application/json")})
        broken = client.post("/v1/predict", files={**photo, "profile": ("me.json", b"{not json", "application/json")})
        foreign = client.post("/v1/predict", files={**photo, "profile": (
            "me.json", json.dumps({**data, "members": ["another", "ensemble"]}), "application/json")})
    assert set_reply == {"profile": "set", "track_ids": []}  # no face yet: every face from now on
    assert profiled["profiled"] and not plain["profiled"] and not fresh["profiled"]
    assert bad == {"profile": "set", "error": "profile: not a profile file of format 'fer-ensemble/profile/v1' "
                                              "(found 'something else')"}
    assert cleared == {"profile": "cleared", "track_ids": [profiled["track_id"]]}
    expected = recognizer.predict(images[7], profile=profile)[0]
    face = answered.json()["faces"][0]
    assert face["profiled"] and face["label"] == expected.label
    assert face["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    assert (broken.status_code, broken.json()) == (422, {"detail": "profile: not a profile file (not JSON)"})
    assert foreign.status_code == 422 and "another ensemble" in foreign.json()["detail"]


def write_moving_y4m(path: Path, image: np.ndarray, shifts: int = 10, repeat: int = 8) -> None:
    """A fake webcam clip of ``image`` moved a little every ``repeat`` frames (15 fps): a still
    picture would be refused by a guided enrolment as a frozen camera."""
    height, width = image.shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(shifts):
            yuv = cv2.cvtColor(np.roll(image, (2 * i, 2 * i), axis=(0, 1)), cv2.COLOR_BGR2YUV_I420).tobytes()
            for _ in range(repeat):
                f.write(b"FRAME\n" + yuv)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_the_page_walks_a_person_through_enrolment_and_keeps_the_profile_in_a_file(tmp_path: Path) -> None:
    """Chromium with a fake webcam, the shipped ensemble: "Enrol my expressions" prompts each
    expression on the picture until it is done, the profile is offered as a download (the profile
    file's JSON), the face's line says "profile"; a new page (a new connection) reads the face
    plainly until that file is loaded, then through it again."""
    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit
    from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE

    camera = tmp_path / "camera.y4m"
    write_moving_y4m(camera, fit(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), 640, 480))
    saved = tmp_path / "fer-profile.json"
    with start_server(SHIPPED_ENSEMBLE, tmp_path / "serve.log", "--token", TOKEN) as (base, _):
        with sync_playwright() as playwright:
            browser, page = open_page(playwright, {"url": base}, {"width": 1280, "height": 900}, camera,
                                      "?enrol_captures=1&enrol_countdown_s=0.5")
            page.wait_for_selector("#status[data-kind=live]", timeout=30_000)
            page.evaluate("""() => { window.seen = []; const status = document.getElementById('enrol-status');
                new MutationObserver(() => window.seen.push(status.innerText)).observe(
                    status, {childList: true, characterData: true, subtree: true}); }""")
            page.click("#enrol")
            page.wait_for_selector("#enrol-status[data-phase=done], #enrol-status[data-phase=failed]", timeout=90_000)
            assert page.get_attribute("#enrol-status", "data-phase") == "done", page.inner_text("#enrol-status")
            prompts = set(page.evaluate("() => window.seen"))
            page.wait_for_function("document.querySelector('#faces li') && "
                                   "document.querySelector('#faces li').innerText.includes(' profile ')", timeout=10_000)
            text = page.evaluate("() => fetch(document.getElementById('profile-download').href).then(r => r.text())")
            check = page.inner_text("#self-check")
            assert page.is_visible("#profile-download") and page.is_visible("#enrol")
            saved.write_text(text)
            page.reload()
            page.wait_for_selector("#status[data-kind=live]", timeout=30_000)
            page.wait_for_selector("#faces li[data-track]", timeout=30_000)
            plain = page.inner_text("#faces li")
            page.set_input_files("#profile-file", str(saved))
            page.wait_for_function("document.querySelector('#faces li').innerText.includes(' profile ')", timeout=10_000)
            loaded = page.inner_text("#enrol-status")
            browser.close()
    profile = Profile.from_dict(json.loads(text))
    assert profile.classes == sorted(ENROL_ORDER, key=EMOTIONS.index)
    assert {f"{i}/7 show {name}" for i, name in enumerate(ENROL_ORDER, 1)} <= {p.split(":")[0].rsplit(" in ", 1)[0]
                                                                                for p in prompts}, prompts
    assert check.startswith("self-check (each frame read by a profile of the others):"), check
    assert " profile " not in plain and loaded.startswith("profile set for"), (plain, loaded)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                    reason="Debian chromium is not installed")
def test_the_page_shows_each_faces_pose_and_strongest_blendshapes_with_face_geometry(server, tmp_path: Path) -> None:
    """The page's "face geometry" box (?geometry=true, kept in the URL as the prior is): the live
    stream asks for geometry, and each face's line says its yaw, pitch and strongest blendshapes."""
    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit

    camera = tmp_path / "camera.y4m"
    write_y4m(camera, fit(cv2.imread(str(SAMPLES / "astronaut.png")), 640, 480))
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server, {"width": 1280, "height": 800}, camera, "?geometry=true")
        page.wait_for_selector("#faces li[data-label]", timeout=30_000)
        page.wait_for_function("() => document.querySelector('#faces li[data-label]').textContent.includes('yaw')",
                               timeout=30_000)
        line = page.inner_text("#faces li[data-label]")
        checked = page.is_checked("#geometry")
        browser.close()
    assert checked and "pitch" in line and "mouthSmile" in line, line

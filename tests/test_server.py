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
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from conftest import REPO, run_cli
from fer_ensemble.apps.media import SAMPLES

pytest.importorskip("fastapi")
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
    from conftest import tiny_member

    folder = tmp_path_factory.mktemp("serve")
    tiny_member(folder, "small", 16, 0)
    tiny_member(folder, "large", 24, 1)
    (folder / "ensemble.json").write_text(json.dumps({"members": [
        {"card": "small.json", "weight": 0.5}, {"card": "large.json", "weight": 0.5}],
        "prior": {"class_prior": [0.34, 0.27, 0.12, 0.14, 0.09, 0.009, 0.028, 0.009], "strength": 1.0}}))
    tmpdir = tmp_path_factory.mktemp("server-tmp")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fer_ensemble.cli", "serve", "--port", str(port), "--ensemble",
         str(folder / "ensemble.json"), "--token", TOKEN, "--max-upload-mb", "3", "--max-fps", "5"],
        cwd=REPO, env={**os.environ, "TMPDIR": str(tmpdir)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", headers=AUTH, timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    yield {"url": base, "port": port, "tmpdir": tmpdir, "ensemble": folder / "ensemble.json"}
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
    assert [f["box"] for f in served["faces"]] == [f["box"] for f in cli["faces"]]
    assert [f["label"] for f in served["faces"]] == [f["label"] for f in cli["faces"]]


def test_a_request_chooses_its_class_prior(server) -> None:
    photo = (SAMPLES / "grace_hopper.jpg").read_bytes()
    default = upload(server, photo).json()["faces"][0]["probabilities"]
    url = server["url"] + "/v1/predict"
    ferplus = httpx.post(url + "?prior=ferplus", files={"file": ("a.jpg", photo)}, headers=AUTH, timeout=30)
    assert ferplus.status_code == 200
    native = ferplus.json()["faces"][0]["probabilities"]
    assert native["neutral"] > default["neutral"] and native["contempt"] < default["contempt"]
    for bad in ("2", "balanced"):
        response = httpx.post(url + f"?prior={bad}", files={"file": ("a.jpg", photo)}, headers=AUTH, timeout=30)
        assert response.status_code == 422 and "prior" in response.json()["detail"]


def test_token_is_required_everywhere(server) -> None:
    for path in ("/healthz", "/v1/model", "/", "/openapi.json", "/docs"):
        assert httpx.get(server["url"] + path, timeout=10).status_code == 401, path
    assert upload(server, (SAMPLES / "astronaut.png").read_bytes(), headers={}).status_code == 401
    assert httpx.get(server["url"] + "/?token=" + TOKEN, timeout=10).status_code == 200
    model = httpx.get(server["url"] + "/v1/model", headers=AUTH, timeout=10).json()
    assert [m["name"] for m in model["members"]] == ["small", "large"]


def test_bad_uploads_get_4xx_with_a_reason(server) -> None:
    too_large = upload(server, b"\xff" * (3 * 2**20 + 10))
    assert too_large.status_code == 413 and "larger than" in too_large.json()["detail"]
    not_image = upload(server, b"this is not an image", "notes.txt")
    assert not_image.status_code == 415 and "not a decodable image" in not_image.json()["detail"]
    assert upload(server, b"", "empty.jpg").status_code == 415
    truncated = (SAMPLES / "astronaut.png").read_bytes()[:5000]
    assert upload(server, truncated, "cut.png").status_code in (200, 415)  # OpenCV may decode a partial PNG
    missing = httpx.post(server["url"] + "/v1/predict", headers=AUTH, timeout=10)
    assert missing.status_code == 422


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

    async def without_token() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server['port']}/v1/stream") as ws:
            await ws.recv()

    with pytest.raises(Exception, match="403|1008"):
        asyncio.run(without_token())


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
def test_browser_page_draws_a_labelled_face(server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from fer_ensemble.apps.benchmark import fit

    camera = tmp_path / "camera.y4m"
    write_y4m(camera, fit(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), 640, 480))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        page = browser.new_page()
        page.goto(f"{server['url']}/?token={TOKEN}")
        page.wait_for_selector("#faces li[data-label]", timeout=30_000)
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
        browser.close()
    assert label in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert drawn > 500  # the box and its label are on the overlay
    assert status == "live"

#!/usr/bin/env python3
"""Load benchmark of ``fer-ensemble serve`` on loopback (a benchmark, not a test).

Starts the server (once per configuration of ``--compare``: ``--detector haar`` and the default,
BlazeFace, or ``--workers 1`` and ``2``), then
for each client count runs that many concurrent clients posting a sample photo to /v1/predict for
a bounded time, and prints throughput (and its ratio to the first configuration's), p50/p95 latency,
errors and the server's resident memory before and after each round (flat memory = no leak).

    python scripts/benchmark_server.py [--clients 1 4 8] [--seconds 15] [--ensemble FILE]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "src" / "fer_ensemble" / "samples" / "grace_hopper.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def round_of(url: str, clients: int, seconds: float, photo: bytes) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    ok = http.post(url, files={"file": ("photo.jpg", photo)}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


COMPARISONS = {  # --compare: server options per row; the first is the baseline of the ratio
    "detector": {
        "Haar (--detector haar)": ["--detector", "haar"],
        "BlazeFace (default)": [],
    },
    "workers": {
        "--workers 1": ["--workers", "1"],
        "--workers 2": ["--workers", "2"],
    },
}


def process_rss_mb(pid: int) -> list[float]:
    """Resident memory of the server and of each worker process it started."""
    children = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout
    return [rss_mb(pid)] + [rss_mb(int(child)) for child in children.split()]


def measure_server(args: argparse.Namespace, options: list[str], photo: bytes) -> list[dict]:
    """Start ``serve`` with these detector options; one round per client count."""
    port = free_port()
    command = [sys.executable, "-m", "fer_ensemble.cli", "serve", "--port", str(port), "--no-access-log", *options]
    if args.ensemble:
        command += ["--ensemble", args.ensemble]
    server = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        round_of(base + "/v1/predict", 1, 2.0, photo)  # warm-up
        for clients in args.clients:
            before = sum(process_rss_mb(server.pid))
            latencies, errors = round_of(base + "/v1/predict", clients, args.seconds, photo)
            processes = process_rss_mb(server.pid)
            after = sum(processes)
            latencies.sort()
            rows.append({"clients": clients, "requests": len(latencies), "per_second": len(latencies) / args.seconds,
                         "p50": statistics.median(latencies) if latencies else float("nan"),
                         "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
                         "errors": errors, "rss": (before, after), "processes": processes})
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--ensemble", default=None)
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="detector",
                        help="detector: --detector haar vs the default (BlazeFace); workers: --workers 1 vs 2")
    args = parser.parse_args()
    photo = PHOTO.read_bytes()
    configs = COMPARISONS[args.compare]
    results = {name: measure_server(args, options, photo) for name, options in configs.items()}
    baseline = results[next(iter(configs))]
    print(f"POST /v1/predict with {PHOTO.name} ({len(photo) // 1024} KiB, 1 face), "
          f"{args.seconds:.0f} s per round, loopback, each configuration in its own server")
    print(f"| {args.compare} | clients | requests | throughput (req/s) | vs first | p50 (ms) | p95 (ms) | errors | "
          "RSS before -> after, all processes (MB) | RSS per process after (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for row, base in zip(rows, baseline):
            per_process = " + ".join(f"{mb:.0f}" for mb in row["processes"])
            print(f"| {name} | {row['clients']} | {row['requests']} | {row['per_second']:.1f} | "
                  f"{row['per_second'] / base['per_second']:.2f}x | {row['p50']:.1f} | {row['p95']:.1f} | "
                  f"{row['errors']} | {row['rss'][0]:.0f} -> {row['rss'][1]:.0f} | {per_process} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

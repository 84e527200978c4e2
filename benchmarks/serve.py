"""xconv serve under load: 16 concurrent clients against `xconv explain` on the same photos, in one run.

    python benchmarks/serve.py [--photos 256] [--clients 16]

Three measurements, bundled model, Grad-CAM of the predicted class with an overlay per photo:
  cli            `xconv explain PHOTOS --method gradcam` (steady state: the run on all photos minus a
                 run on 16, so the model's start is not counted against the command line)
  serve          `xconv serve` in its own process; the clients post every photo to /api/explain
                 (classes=predicted), 16 requests in flight at any time
  serve, batch 1 the same server with --max-batch 1: one request at a time through the model
Throughput is photos per second; the server numbers include HTTP, multipart decoding and base64 PNGs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs" / "validation"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def validation_photos(count: int) -> list[Path]:
    if not SHARED.is_dir():
        sys.exit(f"needs the validation photos in {SHARED}")
    per_class = [sorted((SHARED / name).iterdir()) for name in ("cats", "dogs")]
    return [photo for pair in zip(*per_class) for photo in pair][:count]


def cli_seconds(photos: list[Path]) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xconv.cli", "explain", *map(str, photos), "--method", "gradcam",
                        "--out", out], check=True, capture_output=True, env=ENV)
        return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(max_batch: int):
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "xconv.cli", "serve", "--port", str(port), "--max-batch",
                                str(max_batch)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{url}/api/models", timeout=5)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)


async def post_all(url: str, payloads: list[tuple[str, bytes]], clients: int) -> float:
    import httpx

    queue = list(reversed(payloads))

    async def client(session):
        while queue:
            name, data = queue.pop()
            response = await session.post("/api/explain", files={"file": (name, data)},
                                          data={"method": "gradcam", "classes": "predicted"})
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=300) as session:
        await client_warmup(session, payloads[:clients])
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - start


async def client_warmup(session, payloads):
    """One round of every batch size the run will see, so tracing is not timed."""
    await asyncio.gather(*(session.post("/api/explain", files={"file": (n, d)},
                                        data={"method": "gradcam", "classes": "predicted"}) for n, d in payloads))


def serve_seconds(payloads, clients: int, max_batch: int) -> tuple[float, dict]:
    import httpx

    process, url = start_server(max_batch)
    try:
        seconds = asyncio.run(post_all(url, payloads, clients))
        stats = httpx.get(f"{url}/api/stats").json()
        return seconds, stats
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    photos = validation_photos(args.photos)
    payloads = [(p.name, p.read_bytes()) for p in photos]
    small = photos[:16]
    cli_rate = (len(photos) - len(small)) / (cli_seconds(photos) - cli_seconds(small))
    batched, stats = serve_seconds(payloads, args.clients, 16)
    single, _ = serve_seconds(payloads, args.clients, 1)
    rows = [("cli (steady state)", cli_rate), ("serve", len(photos) / batched), ("serve, batch 1", len(photos) / single)]
    print(f"bundled model, Grad-CAM of the predicted class, {len(photos)} validation photos, {args.clients} clients, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'run':<20} {'photos/s':>9}")
    for name, rate in rows:
        print(f"{name:<20} {rate:>9.1f}")
    print(f"serve / cli: {rows[1][1] / cli_rate:.2f}x; serve / serve batch 1: {rows[1][1] / rows[2][1]:.2f}x; "
          f"model calls {stats['batches']} for {stats['items']} photos (largest {stats['largest_batch']})")


if __name__ == "__main__":
    main()

"""Load test of `cubepose serve` on loopback, against in-process `PosePredictor` batches of the same images.

    .venv/bin/python eval/serve_load.py configs/cpu.yaml --requests 2000 --concurrency 1 8 32

Saves the overlay's model (fresh weights; the speed does not depend on them) as a checkpoint, starts the
real `cubepose serve` on a free loopback port and, for each concurrency, sends the requests from that many
client threads (a `requests.Session` each), round-robin over a pool of distinct PNG images. Every answer
is compared with the in-process prediction of its own image, so a request lost, answered twice or with
another request's pose is counted; latencies give p50 and p99, and the server's resident memory (VmRSS)
is read before and after each concurrency. The baseline, timed while the server idles: `PosePredictor`
on the same PNG bytes, decoded and predicted in batches of ``--baseline-batch`` in this process, images/s.

``--abusive N`` runs every concurrency twice, A/B: undisturbed, then beside N abusive clients that loop over
the attacks the service must shrug off (a chunked body far over ``--max-request-mb``, a client leaving
mid-body, a PNG header claiming 20000x20000 pixels, a body trickled a byte at a time); the row reports the
well-behaved clients' p99 against the undisturbed run's (target: within 2x) and the attacks answered.

    .venv/bin/python eval/serve_load.py configs/cpu.yaml --requests 1000 --concurrency 8 --abusive 4
"""

from __future__ import annotations

import argparse
import io
import logging
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from predict_speed import measured_predictor

from cubepose.serving.http import MAX_BATCH, MAX_WAIT_MS

REPO = Path(__file__).resolve().parents[1]
CUBEPOSE = Path(sys.executable).parent / "cubepose"
logger = logging.getLogger("serve_load")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_mb(pid: int) -> float:
    """The process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png_pool(count: int, size: tuple[int, int]) -> list[bytes]:
    """Distinct random PNG images of ``size`` (width, height), encoded once."""
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="PNG")
        pool.append(buffer.getvalue())
    return pool


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"cubepose serve exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("cubepose serve did not become ready in 60 s")


def load(url: str, pool: list[bytes], expected: np.ndarray, count: int, concurrency: int) -> dict:
    """``count`` requests from ``concurrency`` threads: throughput, latency percentiles and wrong answers."""
    sessions = [requests.Session() for _ in range(concurrency)]

    def client(worker: int) -> tuple[list[float], int]:
        latencies, wrong = [], 0
        for index in range(worker, count, concurrency):
            start = time.perf_counter()
            response = sessions[worker].post(f"{url}/predict", data=pool[index % len(pool)], timeout=120)
            latencies.append(time.perf_counter() - start)
            poses = response.json().get("poses") if response.status_code == 200 else None
            if not poses or not np.allclose(poses[0]["translation"], expected[index % len(pool)], atol=1e-4):
                wrong += 1
        return latencies, wrong

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as threads:
        results = list(threads.map(client, range(concurrency)))
    seconds = time.perf_counter() - start
    latencies = np.concatenate([np.asarray(r[0]) for r in results])
    return {
        "rate": count / seconds,
        "p50": float(np.percentile(latencies, 50)) * 1000,
        "p99": float(np.percentile(latencies, 99)) * 1000,
        "wrong": sum(r[1] for r in results),
        "answered": len(latencies),
    }


MAX_REQUEST_MB = 1  # the server's --max-request-mb in these runs: the oversized attack sends 64x that
TRICKLE_SECONDS = 2.0  # how long the slow client trickles its body before it gives up


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _oversized_chunked(url: str) -> bool:
    """64x the limit as a chunked body; True when the server answered 413 before taking it all."""
    sock = _raw(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
    try:
        for _ in range(64 * MAX_REQUEST_MB):
            sock.sendall(chunk)
    except OSError:
        pass  # closed by the server after its 413
    try:
        return sock.recv(64).startswith(b"HTTP/1.1 413")
    except OSError:
        return False
    finally:
        sock.close()


def _leaving_mid_body(url: str) -> bool:
    """Declare 100 kB, send 1 kB and leave."""
    sock = _raw(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    sock.close()
    return True


def _bomb(url: str) -> bool:
    return requests.post(f"{url}/predict", data=_bomb_png(), timeout=30).status_code == 413


def _trickle(url: str) -> bool:
    """A body sent a byte every 50 ms for ``TRICKLE_SECONDS``, then abandoned (a slowloris client)."""
    sock = _raw(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    deadline = time.perf_counter() + TRICKLE_SECONDS
    try:
        while time.perf_counter() < deadline:
            sock.sendall(b"x")
            time.sleep(0.05)
    except OSError:
        pass
    sock.close()
    return True


ATTACKS = (_oversized_chunked, _leaving_mid_body, _bomb, _trickle)


class Abusers:
    """``count`` threads looping over ``ATTACKS`` until stopped; counts the attacks and those answered as
    they should be (413 for the oversized body and the bomb; the others need no answer)."""

    def __init__(self, url: str, count: int) -> None:
        self.url, self.stop, self.sent, self.answered = url, threading.Event(), 0, 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> Abusers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _loop(self, worker: int) -> None:
        attack = worker
        while not self.stop.is_set():
            answered = ATTACKS[attack % len(ATTACKS)](self.url)
            attack += 1
            with self.lock:
                self.sent += 1
                self.answered += answered


def in_process_rate(predictor, pool: list[bytes], batch: int, repeats: int) -> float:
    """Images/s of ``PosePredictor.predict`` on the PNG bytes (decoded here), in batches of ``batch``."""
    images = [np.asarray(Image.open(io.BytesIO(body)).convert("RGB")) for body in pool[:batch]]
    predictor.predict(images)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict([np.asarray(Image.open(io.BytesIO(body)).convert("RGB")) for body in pool[:batch]])
    return repeats * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", help="the model's recipe, e.g. configs/cpu.yaml+configs/keypoints_cpu.yaml")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--image-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--pool", type=int, default=64, help="distinct images, sent round-robin")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH, help="the server's --max-batch")
    parser.add_argument("--baseline-batch", type=int, default=8, help="in-process PosePredictor batch size")
    parser.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_MS, help="the server's --max-wait-ms")
    parser.add_argument("--abusive", type=int, default=0, help="abusive clients beside each concurrency (A/B)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    pool = png_pool(args.pool, tuple(args.image_size))
    with tempfile.TemporaryDirectory() as folder:
        predictor = measured_predictor(args.overlay, Path(folder))
        checkpoint = next(Path(folder).glob("*.ckpt"))
        images = [np.asarray(Image.open(io.BytesIO(body)).convert("RGB")) for body in pool]
        expected = predictor.predict(images)["translation"]
        port = free_port()
        command = [str(CUBEPOSE), "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
        command += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        command += ["--max-request-mb", str(MAX_REQUEST_MB)]
        log = open(Path(folder) / "serve.log", "w")  # a file, not a pipe: one access line per request
        server = subprocess.Popen(command, stderr=log, stdout=subprocess.DEVNULL, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server, Path(folder) / "serve.log")
            repeats = max(1, args.requests // args.baseline_batch // 4)
            baseline = in_process_rate(predictor, pool, args.baseline_batch, repeats)
            rows = []
            for concurrency in args.concurrency:
                before = resident_mb(server.pid)
                result = load(url, pool, expected, args.requests, concurrency)
                rows.append((str(concurrency), result, before, resident_mb(server.pid)))
                logger.info("concurrency %d: %s", concurrency, result)
                if args.abusive:
                    before = resident_mb(server.pid)
                    with Abusers(url, args.abusive) as abusers:
                        disturbed = load(url, pool, expected, args.requests, concurrency)
                    disturbed["p99 ratio"] = disturbed["p99"] / result["p99"]
                    disturbed["attacks"] = (abusers.sent, abusers.answered)
                    rows.append((f"{concurrency} + {args.abusive} abusive", disturbed, before, resident_mb(server.pid)))
                    logger.info("concurrency %d beside %d abusive clients: %s", concurrency, args.abusive, disturbed)
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    width, height = args.image_size
    lines = [
        f"{args.overlay}: {args.requests} requests per row, PNG {width}x{height} from a pool of {args.pool}, "
        f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}",
        "",
        "| concurrency | requests/s | p50 ms | p99 ms | p99 / p50 | lost or wrong | server memory MB (before → after) "
        "| throughput / in-process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clients, result, before, after in rows:
        lines.append(
            f"| {clients} | {result['rate']:.1f} | {result['p50']:.1f} | {result['p99']:.1f} | "
            f"{result['p99'] / result['p50']:.2f} | {result['wrong'] + args.requests - result['answered']} | "
            f"{before:.0f} → {after:.0f} | {result['rate'] / baseline:.2f} |"
        )
    lines.append(f"| in-process `PosePredictor`, batches of {args.baseline_batch} | {baseline:.1f} | | | | | | 1.00 |")
    for clients, result, _, _ in rows:
        if "p99 ratio" in result:
            sent, answered = result["attacks"]
            lines.append(
                f"{clients}: p99 {result['p99 ratio']:.2f}x the undisturbed run's (target: within 2x); "
                f"{sent} attacks, {answered} answered as they should be"
            )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

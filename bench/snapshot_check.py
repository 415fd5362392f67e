"""What the ingest's check of a snapshot costs (``server.evidence.snapshot_files.jpeg_problem``), against a full
decode of the same picture by Pillow in the same run. By hand:

    .venv/bin/python bench/snapshot_check.py [--runs 5]

The ingest checks every snapshot on its own thread, before the batch's transaction: while it decodes, no seal's
event is stored. A seal's camera sends 640x480 pictures (the agent's default); the larger ones are what a seal with
valid credentials could send at most (40 million pixels, 8 MiB) — the worst that one seal's message can cost the
others. Progressive pictures are refused (from their frame header, before decoding): their full decode shows what
they would cost. Printed per picture: its size, the median time of the check and of a full decode, their ratio.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import bench_support  # noqa: F401 - puts the checkout on sys.path
import cv2
import numpy as np
from bench_support import machine
from PIL import Image

from server.evidence.snapshot_files import jpeg_problem

#: (name, width, height, quality, progressive)
PICTURES = [
    ("camera 640x480", 640, 480, 85, False),
    ("1920x1080", 1920, 1080, 85, False),
    ("12 MP (Camera Module 3)", 4608, 2592, 60, False),
    ("40 MP baseline, noise", 7000, 5700, 30, False),
    ("40 MP baseline, 7 MiB", 7000, 5700, 60, False),
    ("40 MP progressive (refused)", 7000, 5700, 8, True),
    ("12 MP progressive (refused)", 4608, 2592, 95, True),
]


def picture(width: int, height: int, quality: int, progressive: bool) -> bytes:
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    pixels = cv2.add(cv2.resize(coarse, (width, height)), rng.integers(0, 40, (height, width, 3), dtype=np.uint8))
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    ok, encoded = cv2.imencode(".jpg", pixels, params)
    assert ok
    return bytes(encoded.tobytes())


def full_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as decoded:
        decoded.load()


def median_s(work: Callable[[bytes], object], data: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="times each picture is checked (the median is printed)")
    args = parser.parse_args()
    print(f"snapshot check bench on {machine()}")
    for name, width, height, quality, progressive in PICTURES:
        data = picture(width, height, quality, progressive)
        if (jpeg_problem(data) is None) == progressive:
            raise SystemExit(f"{name}: {'taken' if progressive else 'refused'} by the check")
        check, full = median_s(jpeg_problem, data, args.runs), median_s(full_decode, data, args.runs)
        print(
            f"{name:<26} {len(data) / 1024:8.0f} KiB  check {1000 * check:7.1f} ms  "
            f"full decode {1000 * full:7.1f} ms  ratio {check / full:.2f}"
        )


if __name__ == "__main__":
    main()

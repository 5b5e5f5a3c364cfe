"""Benchmark: streamed artifact validation (dropship.artifact) with zlib's inflate and with ISA-L's.

dropship inflates with zlib. ISA-L (``pip install isal``: ``isal.isal_zlib``, zlib's interface with the
same CRC and length checks) would be adopted if it made validation at least twice as fast; this measures
it by swapping it in for zlib inside dropship.artifact.

Not a test. Run from the repository root:

    .venv/bin/python benchmarks/validate.py [--size-mb 200] [--runs 3]

Builds once, under .dropship/bench/, a model directory of about ``--size-mb`` MB packaged as the docs say
(``tar -czf``, gzip level 6): float32 weights rounded as trained weights often are (they compress about
1.8x), a JSON vocabulary, the inference code and a thousand small files. Then, each in a fresh process
reading the file in 64 KiB chunks as the Lambda reads the S3 body:

- ``inspect_artifact`` with each inflate backend: decompressed MB per CPU second and per wall second
  (medians of ``--runs``, the cases interleaved), the process's peak RSS and how much it grew while
  validating, and the peak of Python allocations (tracemalloc, one extra run);
- the bare inflate of the same file with each backend, for reference: the ceiling validation can reach.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import time
import types
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".dropship" / "bench"
CHUNK = 64 * 1024


def build_artifact(size_mb: int) -> Path:
    path = BENCH / f"model-{size_mb}MB.tar.gz"
    if path.exists():
        return path
    import numpy as np

    BENCH.mkdir(parents=True, exist_ok=True)
    print(f"building {path.relative_to(REPO)} (once; gzip level 6 takes a while) ...", flush=True)
    rng = np.random.default_rng(7)
    weights_mb = int(size_mb * 0.8)
    weights = np.round(rng.standard_normal(weights_mb * 1024 * 1024 // 4), 3).astype(np.float32).tobytes()
    words = random.Random(7)
    vocabulary = {f"{words.randbytes(4).hex()}-{i}": i for i in range(size_mb * 1024 * 1024 // 10 // 20)}
    files = {
        "weights.bin": weights,
        "vocab.json": json.dumps(vocabulary).encode(),
        "code/inference.py": b"def model_fn(model_dir):\n    return open(f'{model_dir}/weights.bin', 'rb')\n",
        "code/requirements.txt": b"numpy==2.1.0\n",
        **{f"assets/{i:04d}.txt": words.randbytes(5_000).hex().encode() for i in range(1000)},
    }
    partial = path.with_suffix(".partial")
    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in ("code", "assets"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    partial.rename(path)
    return path


def child(kind: str, backend: str, path: str, trace: bool) -> dict[str, float]:
    """One measurement, in this fresh process."""
    import tracemalloc

    from dropship import artifact

    artifact.zlib = inflate_library(backend)  # dropship.artifact calls zlib.decompressobj and catches zlib.error
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    with open(path, "rb") as stream:
        if kind == "validate":
            limits = artifact.ArtifactLimits()
            decompressed = artifact.inspect_artifact(stream, limits).uncompressed_bytes
        else:
            decompressed = bare_inflate(stream, inflate_library(backend))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    python_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "bytes": decompressed,
        "rss_peak": peak,
        "rss_growth": grown_kib * 1024,
        "python_peak": python_peak,
    }


def inflate_library(backend: str) -> types.ModuleType:
    """``zlib``, or ISA-L's drop-in with zlib's names for what dropship.artifact uses."""
    if backend == "zlib":
        return zlib
    from isal import isal_zlib

    return types.SimpleNamespace(  # type: ignore[return-value]
        decompressobj=isal_zlib.decompressobj, error=isal_zlib.error, MAX_WBITS=isal_zlib.MAX_WBITS
    )


def bare_inflate(stream: io.BufferedReader, library: types.ModuleType) -> int:
    inflater, total = library.decompressobj(wbits=31), 0
    while data := stream.read(CHUNK):
        while data:
            total += len(inflater.decompress(data, CHUNK))
            data = inflater.unconsumed_tail
    while out := inflater.decompress(b"", CHUNK):
        total += len(out)
    return total


def measure(kind: str, backend: str, path: Path, trace: bool = False) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, backend, str(path), "trace" if trace else "-"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "trace")))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="approximate size of the model directory")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    path = build_artifact(args.size_mb)
    backends = ["zlib"]
    if importlib.util.find_spec("isal") is None:
        print("isal is not installed: only zlib is measured (.venv/bin/pip install isal to compare)")
    else:
        backends.append("isal")
    compressed = path.stat().st_size
    cases = [(kind, backend) for kind in ("validate", "inflate") for backend in backends]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(args.runs):  # interleaved, so a busy moment on the machine hits every case alike
        for kind, backend in cases:
            runs[kind, backend].append(measure(kind, backend, path))
    print(f"\n{path.relative_to(REPO)}: {compressed / 1e6:.1f} MB compressed, median of {args.runs} runs each")
    print("MB/s of decompressed data per CPU second (the steady figure on a shared machine) and per wall second")
    print(f"{'':24}{'MB/s CPU':>10}{'MB/s wall':>11}{'peak RSS':>11}{'growth':>9}{'Python peak':>13}")
    speeds = {}
    for kind, backend in cases:
        done = runs[kind, backend]
        size = done[0]["bytes"] / 1e6
        speeds[kind, backend] = size / statistics.median(run["cpu_seconds"] for run in done)
        wall = size / statistics.median(run["seconds"] for run in done)
        peak, growth = max(run["rss_peak"] for run in done) / 1e6, max(run["rss_growth"] for run in done) / 1e6
        traced = measure(kind, backend, path, trace=True)["python_peak"] / 1e6
        label = f"{'validate' if kind == 'validate' else 'bare inflate'} ({backend})"
        print(f"{label:<24}{speeds[kind, backend]:10.0f}{wall:11.0f}{peak:8.1f} MB{growth:6.1f} MB{traced:10.1f} MB")
    if "isal" in backends:
        for kind in ("validate", "inflate"):
            gain = speeds[kind, "isal"] / speeds[kind, "zlib"]
            print(f"{'validation' if kind == 'validate' else 'bare inflate'} with isal: {gain:.2f}x zlib's speed")
        validation_gain = speeds["validate", "isal"] / speeds["validate", "zlib"]
        verdict = "at least 2x: worth shipping isal" if validation_gain >= 2 else "under 2x: dropship keeps zlib"
        print(f"verdict: {verdict}")


if __name__ == "__main__":
    main()

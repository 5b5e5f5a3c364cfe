"""Benchmark: dropship's inference server against the classic SageMaker bring-your-own design.

Not a test. Run from the repository root:

    .venv/bin/python benchmarks/serving.py [--seconds 10] [--connections 16] [--workers 2]

Both servers run as real processes on loopback, on the same scikit-learn model, payload and worker
count. The classic design is scikit_bring_your_own's `predictor.py` (Flask, model loaded lazily per
worker, CSV in and out) under `gunicorn -k sync`, without nginx in front (nginx is not available
here; it would only add a proxy hop). Prints requests/s and p50/p99 latency as ratios, start-up time to
the first healthy /ping, and /ping latency while four 3-second predictions run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = os.path.join(REPO, "container", "serve")
SLOW_SECONDS = 3.0

# One iris row as CSV: the payload the classic predictor understands, sent to both servers.
PAYLOAD = b"5.1,3.5,1.4,0.2\n"
CONTENT_TYPE = "text/csv"

# scikit_bring_your_own's predictor.py, with pandas' CSV parsing replaced by numpy's (pandas is not
# installed here) and the slow model switch used for the /ping measurement.
CLASSIC_PREDICTOR = textwrap.dedent(
    """
    import io, os, pickle, time
    import flask
    import numpy as np

    prefix = "/opt/ml/"
    model_path = os.environ["MODEL_PATH"]
    SLOW = float(os.environ.get("SLOW_SECONDS", "0"))

    class ScoringService(object):
        model = None

        @classmethod
        def get_model(cls):
            if cls.model is None:
                with open(os.path.join(model_path, "model.pkl"), "rb") as inp:
                    cls.model = pickle.load(inp)
            return cls.model

        @classmethod
        def predict(cls, input):
            clf = cls.get_model()
            if SLOW:
                deadline = time.monotonic() + SLOW
                while time.monotonic() < deadline:
                    pass
            return clf.predict(input)

    app = flask.Flask(__name__)

    @app.route("/ping", methods=["GET"])
    def ping():
        health = ScoringService.get_model() is not None
        status = 200 if health else 404
        return flask.Response(response="\\n", status=status, mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def transformation():
        data = None
        if flask.request.content_type == "text/csv":
            data = flask.request.data.decode("utf-8")
            data = np.loadtxt(io.StringIO(data), delimiter=",", ndmin=2)
        else:
            return flask.Response(
                response="This predictor only supports CSV data", status=415, mimetype="text/plain"
            )
        predictions = ScoringService.predict(data)
        out = io.StringIO()
        np.savetxt(out, np.asarray(predictions).reshape(-1, 1), delimiter=",", fmt="%s")
        result = out.getvalue()
        return flask.Response(response=result, status=200, mimetype="text/csv")
    """
)

SLOW_INFERENCE = textwrap.dedent(
    f"""
    import time

    def predict_fn(data, model):
        deadline = time.monotonic() + {SLOW_SECONDS}
        while time.monotonic() < deadline:  # pure-Python work: holds the GIL like most model code
            pass
        return model.predict(data)
    """
)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    startup_s: float
    accept_s: float

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_model(directory: str) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    joblib.dump(model, os.path.join(directory, "model.joblib"))
    import pickle

    with open(os.path.join(directory, "model.pkl"), "wb") as f:
        pickle.dump(model, f)


def raw_request(port: int, method: str, path: str, body: bytes = b"", timeout: float = 30.0) -> tuple[int, float]:
    """One request on a fresh connection; returns (status, seconds)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0, time.perf_counter() - started


def start(name: str, command: list[str], env: dict[str, str], port: int, cwd: str) -> Server:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = started + 60
    accept_s = None
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}")
        if accept_s is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                accept_s = time.perf_counter() - started
            except OSError:
                time.sleep(0.002)
                continue
        try:
            status, _ = raw_request(port, "GET", "/ping", timeout=2)
        except OSError:
            status = 0
        if status == 200:
            return Server(name, process, port, time.perf_counter() - started, accept_s)
        time.sleep(0.01)
    process.kill()
    raise SystemExit(f"{name} did not become healthy")


def start_dropship(model_dir: str, workers: int, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        "SM_MODEL_DIR": model_dir,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_BIND_TO_HOST": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        **(extra_env or {}),
    }
    return start("dropship", [sys.executable, SERVE], env, port, model_dir)


def start_classic(app_dir: str, model_dir: str, workers: int, slow: float = 0.0) -> Server:
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    command = [gunicorn, "--timeout", "60", "-k", "sync", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    command += ["--no-control-socket", "predictor:app"]
    env = {"MODEL_PATH": model_dir, "SLOW_SECONDS": str(slow)}
    return start("classic", command, env, port, app_dir)


# -- load generator -------------------------------------------------------------------------------------


async def _connection(port: int, request: bytes, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if b"connection: close" in lower:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors.append(0)
            if writer is not None:
                writer.close()
            writer = None
            continue
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)
    if writer is not None:
        writer.close()


def load(port: int, seconds: float, connections: int) -> tuple[list[float], list[int]]:
    """Latencies of the successful requests and the errors of `seconds` of load (after 1 s of warm-up)."""
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\nAccept: text/csv\r\n"
        f"Content-Length: {len(PAYLOAD)}\r\n\r\n"
    ).encode() + PAYLOAD

    async def run(duration: float) -> tuple[list[float], list[int]]:
        latencies: list[float] = []
        errors: list[int] = []
        stop_at = time.perf_counter() + duration
        await asyncio.gather(*(_connection(port, request, stop_at, latencies, errors) for _ in range(connections)))
        return latencies, errors

    asyncio.run(run(1.0))  # warm-up
    return asyncio.run(run(seconds))


def summarize(latencies: list[float], errors: list[int], seconds: float) -> dict[str, float]:
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "errors": float(len(errors)),
    }


def ping_under_slow_predictions(server: Server, slow_requests: int = 4) -> dict[str, float]:
    """Start `slow_requests` slow predictions, then time /ping (fresh connection each) while they run."""
    threads = [
        threading.Thread(target=raw_request, args=(server.port, "POST", "/invocations", PAYLOAD, 60))
        for _ in range(slow_requests)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let every slow prediction reach a worker
    timings = []
    statuses = []
    deadline = time.perf_counter() + SLOW_SECONDS - 1.0
    while time.perf_counter() < deadline or not timings:
        status, seconds = raw_request(server.port, "GET", "/ping", timeout=60)
        statuses.append(status)
        timings.append(seconds)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return {
        "max_ms": max(timings) * 1000,
        "median_ms": statistics.median(timings) * 1000,
        "pings": float(len(timings)),
        "non_200": float(sum(1 for s in statuses if s != 200)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="the servers take turns, --seconds split in rounds")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the dropship server")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    with (
        tempfile.TemporaryDirectory() as model_dir,
        tempfile.TemporaryDirectory() as slow_dir,
        tempfile.TemporaryDirectory() as classic_dir,
    ):
        make_model(model_dir)
        make_model(slow_dir)
        os.makedirs(os.path.join(slow_dir, "code"))
        with open(os.path.join(slow_dir, "code", "inference.py"), "w") as f:
            f.write(SLOW_INFERENCE)
        with open(os.path.join(classic_dir, "predictor.py"), "w") as f:
            f.write(CLASSIC_PREDICTOR)

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, loopback only")
        print(f"model: scikit-learn LogisticRegression (iris); payload: {len(PAYLOAD)} bytes of {CONTENT_TYPE}")
        print(
            f"workers: {args.workers} each; load: {args.connections} connections, {args.seconds:.0f} s per server "
            f"in {args.rounds} alternating rounds"
        )
        print("classic: scikit_bring_your_own predictor.py, Flask on gunicorn -k sync, no nginx (not available)")
        print(
            "dropship limits each worker's BLAS/OpenMP threads to its share of the cores; the classic design does not"
        )
        print()

        # Both servers stay up and take turns, in rounds, so a change in the machine's background load
        # weighs on both alike.
        servers = {
            "classic": start_classic(classic_dir, model_dir, args.workers),
            "dropship": start_dropship(model_dir, args.workers, extra_env),
        }
        results: dict[str, dict[str, float]] = {}
        try:
            samples: dict[str, tuple[list[float], list[int]]] = {name: ([], []) for name in servers}
            for _ in range(args.rounds):
                for name, server in servers.items():
                    latencies, errors = load(server.port, args.seconds / args.rounds, args.connections)
                    samples[name][0].extend(latencies)
                    samples[name][1].extend(errors)
            for name, server in servers.items():
                results[name] = {
                    "startup_s": server.startup_s,
                    "accept_s": server.accept_s,
                    **summarize(*samples[name], args.seconds),
                }
        finally:
            for server in servers.values():
                server.stop()

        for name, starter in (
            ("classic", lambda: start_classic(classic_dir, model_dir, args.workers, slow=SLOW_SECONDS)),
            ("dropship", lambda: start_dropship(slow_dir, args.workers, extra_env)),
        ):
            server = starter()
            try:
                results[name].update({f"ping_{k}": v for k, v in ping_under_slow_predictions(server).items()})
            finally:
                server.stop()

        c, d = results["classic"], results["dropship"]
        rows = [
            ("requests/s", "rps", "{:.0f}"),
            ("p50 latency (ms)", "p50_ms", "{:.2f}"),
            ("p99 latency (ms)", "p99_ms", "{:.2f}"),
            ("errors", "errors", "{:.0f}"),
            ("start-up to accepting connections (s)", "accept_s", "{:.3f}"),
            ("start-up to healthy /ping (s)", "startup_s", "{:.2f}"),
            ("/ping max under 4 slow predictions (ms)", "ping_max_ms", "{:.1f}"),
            ("/ping median under 4 slow predictions (ms)", "ping_median_ms", "{:.1f}"),
            ("/ping non-200 answers", "ping_non_200", "{:.0f}"),
        ]
        print(f"{'':44} {'classic':>10} {'dropship':>10} {'ratio d/c':>10}")
        for label, key, fmt in rows:
            ratio = f"{d[key] / c[key]:.2f}x" if c[key] else "-"
            print(f"{label:44} {fmt.format(c[key]):>10} {fmt.format(d[key]):>10} {ratio:>10}")
        print()
        print(
            f"targets: requests/s >= 2x classic: {'met' if d['rps'] >= 2 * c['rps'] else 'NOT met'}; "
            f"p99 no worse: {'met' if d['p99_ms'] <= c['p99_ms'] else 'NOT met'}; "
            f"/ping < 50 ms under slow predictions: {'met' if d['ping_max_ms'] < 50 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()

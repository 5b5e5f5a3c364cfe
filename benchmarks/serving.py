"""Benchmark: dropship's inference server against the classic SageMaker bring-your-own design.

Not a test. Run from the repository root (`make benchmark` does, after checking for nginx and wrk):

    .venv/bin/python benchmarks/serving.py [--rounds 8] [--seconds 4] [--connections 16] [--workers 2]
        [--classic-csv numpy|pandas] [--ceiling] [--serve path/to/another/container/serve]

Both designs run as real processes on loopback, on the same scikit-learn model, payload and worker count:

- classic: amazon-sagemaker-examples' scikit_bring_your_own container as it ships: nginx (its nginx.conf:
  one worker, client keep-alive 5 s, HTTP/1.0 to the upstream over a Unix socket, access log on) in front
  of `gunicorn -k gevent` running `predictor.py` (Flask, the model loaded lazily). Its CSV is read and
  written with numpy, as dropship's defaults do, unless `--classic-csv pandas` (the example's own code).
- dropship: `container/serve`, as the image runs it.
- ceiling (`--ceiling`): a bare ASGI app doing the same prediction inline on uvicorn, for reference.

The load generator is wrk (C, one thread, keep-alive connections, the same Lua script for every design),
so it costs the same per request on either side; its own share of the CPU is printed. The designs take
turns in rounds, so a change in the machine's background load weighs on all alike; medians and ranges
over the rounds are printed, with the server's CPU per request (its processes' user + system time).
Then /ping is timed (fresh connections) while CPU-bound 3-second predictions occupy every worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dropship.local.ports import free_port  # the local stack's: never hands out the same port twice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = os.path.join(REPO, "container", "serve")
SLOW_SECONDS = 3.0
SLOW_REQUESTS = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# One iris row as CSV: the payload the classic predictor understands, sent to both servers.
PAYLOAD = b"5.1,3.5,1.4,0.2\n"
CONTENT_TYPE = "text/csv"

# scikit_bring_your_own's predictor.py as the example ships it (Flask, the model loaded lazily, a print per
# invocation), reading the model path from the environment, with a CPU-bound slow-model switch for the
# /ping measurement. The example reads and writes CSV with pandas; by default (CLASSIC_CSV=numpy) this
# one does it with numpy.loadtxt/savetxt, exactly as dropship's default input_fn/output_fn do, so both
# sides do the same prediction work and the figures compare the servers. pandas' CSV costs about three
# times more per request than the rest of the classic design (`--classic-csv pandas` measures it).
CLASSIC_PREDICTOR = textwrap.dedent(
    """
    import io, os, pickle, time
    import flask
    import numpy as np
    import pandas as pd

    model_path = os.environ["MODEL_PATH"]
    SLOW = float(os.environ.get("SLOW_SECONDS", "0"))
    PANDAS = os.environ.get("CLASSIC_CSV") == "pandas"

    class ScoringService(object):
        model = None

        @classmethod
        def get_model(cls):
            if cls.model == None:
                with open(os.path.join(model_path, "model.pkl"), "rb") as inp:
                    cls.model = pickle.load(inp)
            return cls.model

        @classmethod
        def predict(cls, input):
            clf = cls.get_model()
            if SLOW:
                deadline = time.monotonic() + SLOW
                while time.monotonic() < deadline:  # pure-Python work: holds the GIL like most model code
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
            s = io.StringIO(data)
            data = pd.read_csv(s, header=None) if PANDAS else np.loadtxt(s, delimiter=",", ndmin=2)
        else:
            return flask.Response(response="This predictor only supports CSV data", status=415, mimetype="text/plain")
        print("Invoked with {} records".format(data.shape[0]))
        predictions = ScoringService.predict(data)
        out = io.StringIO()
        if PANDAS:
            pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
        else:
            np.savetxt(out, predictions, delimiter=",", fmt="%s")
        result = out.getvalue()
        return flask.Response(response=result, status=200, mimetype="text/csv")
    """
)

CLASSIC_WSGI = "import predictor as myapp\n\napp = myapp.app\n"

# The example's nginx.conf, with the port, the socket and the log and temporary paths made local.
CLASSIC_NGINX = textwrap.dedent(
    """
    worker_processes 1;
    daemon off;
    pid {dir}/nginx.pid;
    error_log {dir}/nginx-error.log;

    events {{
    }}

    http {{
      include /etc/nginx/mime.types;
      default_type application/octet-stream;
      access_log {dir}/nginx-access.log combined;
      client_body_temp_path {dir}/client_body;
      proxy_temp_path {dir}/proxy;
      fastcgi_temp_path {dir}/fastcgi;
      uwsgi_temp_path {dir}/uwsgi;
      scgi_temp_path {dir}/scgi;

      upstream gunicorn {{
        server unix:{dir}/gunicorn.sock;
      }}

      server {{
        listen 127.0.0.1:{port} deferred;
        client_max_body_size 5m;

        keepalive_timeout 5;
        proxy_read_timeout 300s;

        location ~ ^/(ping|invocations) {{
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          proxy_set_header Host $http_host;
          proxy_redirect off;
          proxy_pass http://gunicorn;
        }}

        location / {{
          return 404 "{{}}";
        }}
      }}
    }}
    """
)

# The ceiling (--ceiling): a bare ASGI app doing the same prediction inline, no framework, on uvicorn
# (httptools, uvloop) with the same number of processes. Not a server one could ship (a slow prediction
# blocks its event loop, /ping included): the most a Python server does per second on this machine.
CEILING_APP = textwrap.dedent(
    """
    import io, os, pickle
    import numpy as np

    with open(os.path.join(os.environ["MODEL_PATH"], "model.pkl"), "rb") as f:
        model = pickle.load(f)

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/invocations":
            out = io.StringIO()
            rows = np.loadtxt(io.StringIO(body.decode()), delimiter=",", ndmin=2, dtype=np.float64)
            np.savetxt(out, model.predict(rows), delimiter=",", fmt="%s")
            answer, content_type = out.getvalue().encode(), b"text/csv"
        else:
            answer, content_type = b"{}", b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
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

# wrk's script, the same for both designs: a keep-alive POST of the payload; prints one line of figures.
WRK_SCRIPT = textwrap.dedent(
    f"""
    wrk.method = "POST"
    wrk.body = "{PAYLOAD.decode().strip()}\\n"
    wrk.headers["Content-Type"] = "{CONTENT_TYPE}"
    wrk.headers["Accept"] = "{CONTENT_TYPE}"
    done = function(summary, latency, requests)
      local e = summary.errors
      io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
        e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))
    end
    """
)


def cpu_seconds(root_pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, todo = 0.0, list(root_pids)
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Server:
    name: str
    processes: list[subprocess.Popen[bytes]]
    port: int
    startup_s: float = 0.0

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def raw_request(port: int, method: str, path: str, body: bytes = b"", timeout: float = 60.0) -> tuple[int, float]:
    """One request on a fresh connection; returns (status, seconds)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\nAccept: {CONTENT_TYPE}\r\n"
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0, time.perf_counter() - started


def launch(command: list[str], env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so stop() can kill every worker too
    )


def wait_healthy(server: Server, started: float) -> Server:
    deadline = started + 60
    while time.perf_counter() < deadline:
        for process in server.processes:
            if process.poll() is not None:
                server.stop()
                raise SystemExit(f"{server.name} exited with {process.returncode}")
        try:
            status, _ = raw_request(server.port, "GET", "/ping", timeout=2)
        except OSError:
            status = 0
        if status == 200:
            server.startup_s = time.perf_counter() - started
            return server
        time.sleep(0.01)
    server.stop()
    raise SystemExit(f"{server.name} did not become healthy")


def start_dropship(model_dir: str, workers: int, extra_env: dict[str, str], serve: str = SERVE) -> Server:
    port = free_port()
    env = {
        "SM_MODEL_DIR": model_dir,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_BIND_TO_HOST": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        **extra_env,
    }
    started = time.perf_counter()
    return wait_healthy(Server("dropship", [launch([sys.executable, serve], env, model_dir)], port), started)


def start_classic(app_dir: str, model_dir: str, workers: int, slow: float = 0.0, csv: str = "numpy") -> Server:
    """The example's `serve`: nginx, and gunicorn -k gevent on a Unix socket behind it."""
    port = free_port()
    run_dir = tempfile.mkdtemp(dir=app_dir)
    os.chmod(run_dir, 0o755)  # nginx's worker runs as nobody when started by root: it must reach the socket
    conf = os.path.join(run_dir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CLASSIC_NGINX.format(dir=run_dir, port=port))
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    command = [gunicorn, "--timeout", "60", "-k", "gevent", "-b", f"unix:{run_dir}/gunicorn.sock"]
    command += ["-w", str(workers), "--no-control-socket", "wsgi:app"]
    started = time.perf_counter()
    processes = [
        launch(["nginx", "-c", conf, "-p", run_dir, "-e", f"{run_dir}/nginx-error.log"], {}, run_dir),
        launch(command, {"MODEL_PATH": model_dir, "SLOW_SECONDS": str(slow), "CLASSIC_CSV": csv}, app_dir),
    ]
    return wait_healthy(Server("classic", processes, port), started)


def start_ceiling(app_dir: str, model_dir: str, workers: int) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "ceiling:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--http", "httptools", "--loop", "uvloop", "--lifespan", "off"]
    command += ["--no-access-log", "--log-level", "warning"]
    started = time.perf_counter()
    env = {"MODEL_PATH": model_dir, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return wait_healthy(Server("ceiling", [launch(command, env, app_dir)], port), started)


# -- load ------------------------------------------------------------------------------------------------


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float  # server CPU per request
    wrk_cpu_share: float  # the load generator's CPU over the machine's CPU during the round


def wrk(script: str, port: int, seconds: float, connections: int) -> tuple[list[int], float]:
    """Run wrk; returns its RESULT figures and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", script]
    result = subprocess.run([*command, f"http://127.0.0.1:{port}/invocations"], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed: {result.stdout}{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return [int(x) for x in line.split()[1:]], cpu


def measure(server: Server, script: str, seconds: float, connections: int) -> Round:
    wrk(script, server.port, 1, connections)  # warm-up: connections, caches, the lazily loaded model
    cpu_before = cpu_seconds(server.pids())
    (requests, duration_us, errors, p50_us, p99_us), wrk_cpu = wrk(script, server.port, seconds, connections)
    server_cpu = cpu_seconds(server.pids()) - cpu_before
    duration = duration_us / 1e6
    return Round(
        rps=requests / duration,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        errors=errors,
        server_cpu_us=server_cpu / max(requests, 1) * 1e6,
        wrk_cpu_share=wrk_cpu / (duration * (os.cpu_count() or 1)),
    )


def ping_under_slow_predictions(server: Server) -> dict[str, float]:
    """Start CPU-bound slow predictions on every worker (and more queued), then time /ping while they run."""
    threads = [
        threading.Thread(target=raw_request, args=(server.port, "POST", "/invocations", PAYLOAD))
        for _ in range(SLOW_REQUESTS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let the slow predictions reach the workers
    timings: list[float] = []
    statuses: list[int] = []
    deadline = time.perf_counter() + SLOW_SECONDS - 1.0
    while time.perf_counter() < deadline or not timings:
        status, seconds = raw_request(server.port, "GET", "/ping")
        statuses.append(status)
        timings.append(seconds)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return {
        "ping_max_ms": max(timings) * 1000,
        "ping_median_ms": statistics.median(timings) * 1000,
        "ping_non_200": float(sum(1 for s in statuses if s != 200)),
    }


# -- report ----------------------------------------------------------------------------------------------


@dataclass
class Results:
    rounds: dict[str, list[Round]] = field(default_factory=dict)
    extra: dict[str, dict[str, float]] = field(default_factory=dict)


def spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(results: Results, names: list[str]) -> None:
    rows: list[tuple[str, Callable[[Round], float], str]] = [
        ("requests/s", lambda r: r.rps, "{:.0f}"),
        ("p50 latency (ms)", lambda r: r.p50_ms, "{:.2f}"),
        ("p99 latency (ms)", lambda r: r.p99_ms, "{:.2f}"),
        ("server CPU per request (us)", lambda r: r.server_cpu_us, "{:.0f}"),
        ("load generator CPU (% of all cores)", lambda r: r.wrk_cpu_share * 100, "{:.1f}"),
    ]
    width = 26
    print(f"{'median (range) over the rounds':40}" + "".join(f"{n:>{width}}" for n in names))
    for label, get, fmt in rows:
        cells = [spread([get(r) for r in results.rounds[n]], fmt) for n in names]
        print(f"{label:40}" + "".join(f"{c:>{width}}" for c in cells))
    print(
        f"{'errors (all rounds)':40}" + "".join(f"{sum(r.errors for r in results.rounds[n]):>{width}}" for n in names)
    )
    for label, key, fmt in (
        ("start-up to healthy /ping (s)", "startup_s", "{:.2f}"),
        (f"/ping max under {SLOW_REQUESTS} slow predictions (ms)", "ping_max_ms", "{:.1f}"),
        (f"/ping median under {SLOW_REQUESTS} slow predictions (ms)", "ping_median_ms", "{:.1f}"),
        ("/ping non-200 answers", "ping_non_200", "{:.0f}"),
    ):
        cells = [fmt.format(results.extra[n][key]) if key in results.extra[n] else "-" for n in names]
        print(f"{label:40}" + "".join(f"{c:>{width}}" for c in cells))
    print()


def ratios(results: Results, name: str, base: str) -> tuple[list[float], list[float], list[float]]:
    """Per round (the two ran back to back), `name` over `base`: requests/s, p99 and CPU per request."""
    pairs = list(zip(results.rounds[name], results.rounds[base], strict=True))
    return (
        [n.rps / b.rps for n, b in pairs],
        [n.p99_ms / b.p99_ms for n, b in pairs],
        [n.server_cpu_us / b.server_cpu_us for n, b in pairs],
    )


# -- main ------------------------------------------------------------------------------------------------


def require_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    try:
        import gevent  # noqa: F401
    except ImportError:
        missing.append("gevent (pip install gevent)")
    if missing:
        raise SystemExit(
            f"benchmarks/serving.py needs {', '.join(missing)}: apt-get install -y nginx wrk (as root); "
            "`make benchmark` installs gevent into .venv"
        )


def make_model(directory: str) -> None:
    import pickle

    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    joblib.dump(model, os.path.join(directory, "model.joblib"))
    with open(os.path.join(directory, "model.pkl"), "wb") as f:
        pickle.dump(model, f)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="per design per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--classic-csv", choices=("numpy", "pandas"), default="numpy", help="pandas: predictor.py's CSV as shipped"
    )
    parser.add_argument("--ceiling", action="store_true", help="also measure a bare ASGI app doing the same work")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the dropship server")
    parser.add_argument("--serve", default=SERVE, help="another container/serve to measure, e.g. an older commit's")
    args = parser.parse_args()
    require_tools()
    extra_env = dict(item.split("=", 1) for item in args.env)

    with tempfile.TemporaryDirectory() as root:
        model_dir, slow_dir, app_dir = (os.path.join(root, name) for name in ("model", "slow", "apps"))
        for directory in (model_dir, slow_dir, app_dir):
            os.makedirs(directory)
        os.chmod(root, 0o755)
        make_model(model_dir)
        make_model(slow_dir)
        os.makedirs(os.path.join(slow_dir, "code"))
        files = {
            os.path.join(slow_dir, "code", "inference.py"): SLOW_INFERENCE,
            os.path.join(app_dir, "predictor.py"): CLASSIC_PREDICTOR,
            os.path.join(app_dir, "wsgi.py"): CLASSIC_WSGI,
            os.path.join(app_dir, "ceiling.py"): CEILING_APP,
            os.path.join(root, "post.lua"): WRK_SCRIPT,
        }
        for path, text in files.items():
            with open(path, "w") as f:
                f.write(text)
        script = os.path.join(root, "post.lua")

        nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
        print(
            f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
            f"python {platform.python_version()}; load average at start {load_average()}"
        )
        print(f"model: scikit-learn LogisticRegression (iris); payload: {len(PAYLOAD)} bytes of {CONTENT_TYPE}")
        print(
            f"load generator: wrk {wrk_version}, 1 thread, {args.connections} keep-alive connections, on the same "
            f"machine; {args.rounds} rounds of {args.seconds:g} s per design, interleaved, each after 1 s of warm-up"
        )
        nginx = nginx_version.replace("nginx version: ", "")
        print(
            f"classic: {nginx} (the example's nginx.conf) -> gunicorn -k gevent, {args.workers} workers -> "
            f"Flask predictor.py, CSV with {args.classic_csv}"
        )
        serve = os.path.relpath(args.serve, REPO)
        print(f"dropship: {serve}, SAGEMAKER_MODEL_SERVER_WORKERS={args.workers} {' '.join(args.env)}".rstrip())
        if args.ceiling:
            print(f"ceiling: a bare ASGI app predicting inline, uvicorn (httptools, uvloop), {args.workers} processes")
        print()

        results = Results()
        starters: dict[str, Callable[[], Server]] = {
            "classic": lambda: start_classic(app_dir, model_dir, args.workers, csv=args.classic_csv),
            "dropship": lambda: start_dropship(model_dir, args.workers, extra_env, args.serve),
        }
        if args.ceiling:
            starters["ceiling"] = lambda: start_ceiling(app_dir, model_dir, args.workers)
        names = list(starters)
        servers: dict[str, Server] = {}
        try:
            for name in names:
                servers[name] = starters[name]()
                results.extra[name] = {"startup_s": servers[name].startup_s}
                results.rounds[name] = []
            for _ in range(args.rounds):
                for name in names:
                    results.rounds[name].append(measure(servers[name], script, args.seconds, args.connections))
        finally:
            for server in servers.values():
                server.stop()

        slow_starters: dict[str, Callable[[], Server]] = {
            "classic": lambda: start_classic(app_dir, model_dir, args.workers, slow=SLOW_SECONDS, csv=args.classic_csv),
            "dropship": lambda: start_dropship(slow_dir, args.workers, extra_env, args.serve),
        }
        for name, start in slow_starters.items():
            server = start()
            try:
                results.extra[name].update(ping_under_slow_predictions(server))
            finally:
                server.stop()

        report(results, names)
        rps_ratios, p99_ratios, cpu_ratios = ratios(results, "dropship", "classic")
        print(
            f"dropship / classic, per round: requests/s {spread(rps_ratios, '{:.2f}x')}, "
            f"p99 {spread(p99_ratios, '{:.2f}x')}, server CPU per request {spread(cpu_ratios, '{:.2f}x')} "
            f"(on saturated cores: {1 / statistics.median(cpu_ratios):.1f}x the requests/s)"
        )
        if args.ceiling:
            ceiling_rps, _, ceiling_cpu = ratios(results, "dropship", "ceiling")
            print(
                f"dropship / ceiling, per round: requests/s {spread(ceiling_rps, '{:.2f}x')}, "
                f"server CPU per request {spread(ceiling_cpu, '{:.2f}x')}"
            )
        print(f"load average at the end {load_average()}")
        d, c = results.rounds["dropship"], results.rounds["classic"]
        rps_met = statistics.median(rps_ratios) >= 2
        p99_met = statistics.median(r.p99_ms for r in d) <= statistics.median(r.p99_ms for r in c)
        ping_met = results.extra["dropship"]["ping_max_ms"] < 50
        print(
            f"targets: requests/s >= 2x classic (median): {'met' if rps_met else 'NOT met'}; "
            f"p99 no worse (median): {'met' if p99_met else 'NOT met'}; "
            f"/ping < 50 ms under slow predictions: {'met' if ping_met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()

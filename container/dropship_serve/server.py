"""Starting gunicorn in-process: the `serve` process is the gunicorn master, the port is bound at once.

gunicorn runs one worker, the HTTP process; it starts the inference processes (`pool.py`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from dropship_serve import logs
from dropship_serve.errors import EXIT_MODEL_LOAD_FAILED
from dropship_serve.settings import Settings, SettingsError
from dropship_serve.shared import SharedState

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# uvicorn with httptools and uvloop (C parser, C event loop): the HTTP process costs 100 us per request
# where gunicorn's own asyncio worker costs 150 (measured on the benchmark's requests); it is the one
# process every request passes through.
WORKER_CLASSES = {"uvicorn": "uvicorn_worker.UvicornWorker", "asgi": "asgi"}
EXIT_BAD_SETTINGS = 2
# gunicorn replaces the HTTP process when its heartbeat is this old. It is not SAGEMAKER_MODEL_SERVER_TIMEOUT
# (SageMaker's sync gunicorn workers run model code; ours never does, and invocations time out in pool.py):
# uvicorn beats at most once a second, so a timeout of 1 or 2 would kill an idle, healthy HTTP process.
HTTP_HEARTBEAT_TIMEOUT_S = 30


class ServeApplication(BaseApplication):
    """gunicorn configured from `Settings`; the app itself is only imported in the workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shared = SharedState.create()  # inherited by the HTTP process through fork
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def run(self) -> None:
        arbiter = Arbiter(self)
        try:
            arbiter.run()
            status: int | str | None = 0
        except HaltServer as exc:
            # gunicorn raises again when a second worker fails to boot while it is already halting.
            for pid in list(arbiter.WORKERS):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            status = exc.exit_status
        except SystemExit as exc:
            status = exc.code
        failure = self.shared.failure_message()
        if failure:  # repeat the worker's reason as the very last line, where a supervisor looks
            logs.get_logger().critical(f"stopped: {failure}", extra={"event": "model_load_failed"})
        sys.exit(status)

    def load(self) -> Any:
        from dropship_serve.app import create_app

        return create_app(self.settings, self.shared)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        # One HTTP process (an asyncio event loop) balances requests over the inference processes;
        # pool.py says why. gunicorn supervises it: SIGTERM drains it, a failed boot stops the server.
        "workers": 1,
        "worker_class": WORKER_CLASSES[settings.worker_class],
        "timeout": HTTP_HEARTBEAT_TIMEOUT_S,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": 5,
        "backlog": 2048,
        "pythonpath": PACKAGE_PARENT,
        "proc_name": "dropship-serve",
        "logconfig_dict": logs.logconfig_dict(settings.log_level, settings.access_log),
        "loglevel": settings.log_level,
        "errorlog": "-",
        "accesslog": "-" if settings.access_log else None,
        "access_log_format": "%(m)s %(U)s %(s)s %(B)s %(M)sms",
        "asgi_lifespan": "on",
        "control_socket_disable": True,
    }


NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_native_threads(settings: Settings) -> dict[str, str]:
    """Give each inference thread's BLAS/OpenMP pool its share of the cores, unless the user chose.

    N inference processes each spinning up one BLAS thread per core oversubscribe the machine: on 2 cores
    with 2 processes this alone halves the requests/s of a scikit-learn model. Set in the master, before
    any process imports numpy; the inference processes inherit it.
    """
    share = str(max(1, (os.cpu_count() or 1) // (settings.workers * settings.inference_threads)))
    chosen = {}
    for name in NATIVE_THREAD_VARIABLES:
        chosen[name] = os.environ.setdefault(name, share)
    return chosen


def install_requirements(settings: Settings) -> bool:
    """Install `code/requirements.txt` once, before any worker starts; False (logged) if it cannot be."""
    from dropship_serve import core, requirements
    from dropship_serve.errors import ModelLoadError

    try:
        path = core.requirements_file(settings)
        if path is not None:
            requirements.ensure_installed(path, settings.install_requirements, settings.allow_package_sources)
    except ModelLoadError as exc:
        logs.get_logger().critical(str(exc), extra={"event": "model_load_failed", "model_dir": settings.model_dir})
        return False
    return True


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        logs.configure()
        logs.get_logger().critical(str(exc), extra={"event": "bad_settings"})
        return EXIT_BAD_SETTINGS
    logs.configure(settings.log_level)
    log = logs.get_logger()
    if not os.path.isdir(settings.model_dir):
        log.critical(
            f"model directory {settings.model_dir} does not exist (set SM_MODEL_DIR)",
            extra={"event": "model_load_failed", "model_dir": settings.model_dir},
        )
        return EXIT_BAD_SETTINGS
    if not install_requirements(settings):
        return EXIT_MODEL_LOAD_FAILED
    native_threads = limit_native_threads(settings)
    log.info(
        "starting",
        extra={
            "event": "starting",
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "threads_per_worker": settings.inference_threads,
            "timeout_s": settings.timeout,
            "native_threads": native_threads,
            "model_dir": settings.model_dir,
            "python": sys.version.split()[0],
        },
    )
    ServeApplication(settings).run()  # exits through SystemExit with gunicorn's status
    return 0

"""``LocalStack``: an emulated AWS account running the project's real template, code and container.

moto in server mode (in this process, on one port) plus dropship's seams: CloudFormation fixes,
EventBridge -> Step Functions delivery, Lambda invocations running the real handlers, SageMaker
endpoints running the real inference container and publishing their metrics and data capture, CloudWatch
alarms evaluated with their state change events, Application Auto Scaling as AWS records it. Used by the
integration tests (on a free port) and by ``dropship local up`` (on 4566).

Files: with ``state_dir`` (``dropship local up``) logs go to ``<state>/logs`` (kept after the stack stops,
cleared when the next one starts) and the working files to ``<state>/run`` (removed when it stops); what a
dead stack left there is stopped first. Without, both live under ``run_dir`` (a temporary directory unless
given). Every child process is started by a ``processes.Supervisor``, so none outlives the stack.

moto keeps its state in process-wide backends and its seams are class patches, so one ``LocalStack``
can run per process at a time; starting a second one while the first runs raises ``RuntimeError``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from dropship.local import paths
from dropship.local.deploy import DEFAULT_STACK_NAME, Deployment, deploy_template, load_template
from dropship.local.processes import Supervisor, stop_leftovers
from dropship.local.settings import LocalSettings, SettingsError

log = logging.getLogger(__name__)

# Template parameters the local stack fills in when the caller does not (and the template declares them):
# an image URI that passes the default "this account's ECR" prefix rule (locally the image is never
# pulled: endpoints run container/serve), and a status poll suited to endpoints that start in seconds.
LOCAL_PARAMETER_DEFAULTS = {
    "DefaultImageUri": "123456789012.dkr.ecr.{region}.amazonaws.com/dropship-serve:local",
    "LockPollSeconds": "2",
    "EndpointCheckSeconds": "30",
    "DefaultBakeSeconds": "0",
    "WatchPeriodSeconds": "10",
}

_active_lock = threading.Lock()
_active: LocalStack | None = None


class LocalStackError(RuntimeError):
    """The local stack could not start (port taken, deploy failed ...)."""


def _make_server(host: str, port: int) -> Any:
    """A ``ThreadedMotoServer`` that reports a bind failure instead of waiting forever for readiness."""
    from moto.server import ThreadedMotoServer

    class _Server(ThreadedMotoServer):
        bind_error: BaseException | None = None

        def _server_entry(self) -> None:
            try:
                super()._server_entry()
            except BaseException as exc:
                self.bind_error = exc
                self._server_ready_event.set()

    return _Server(ip_address=host, port=port, verbose=False)


class LocalStack:
    """An emulated AWS account with the project's stack deployed in it.

    ``start()`` serves moto on ``host:port``, turns on real Step Functions execution and the non-Docker
    Lambda backend, installs the seams, deploys ``<project_dir>/template.yaml`` as stack ``dropship`` and
    returns once it is ``CREATE_COMPLETE``. ``stop()`` ends endpoint processes, Lambda workers and the
    server and removes the seams. Also a context manager.
    """

    def __init__(
        self,
        project_dir: Path,
        host: str = "127.0.0.1",
        port: int = 4566,
        region: str = "us-east-1",
        parameter_overrides: dict[str, str] | None = None,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        run_dir: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.host = host
        self.port = port
        self.region = region
        self.parameter_overrides = dict(parameter_overrides or {})
        self.stack_name = stack_name
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if self.state_dir is not None:
            self.run_dir, self.log_dir = paths.run_dir(self.state_dir), paths.logs_dir(self.state_dir)
            self._own_run_dir = True
        else:
            self._own_run_dir = run_dir is None
            self.run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="dropship-local-"))
            self.log_dir = self.run_dir / "logs"
        self.deployment: Deployment | None = None
        self._server: Any = None
        self._patches = ExitStack()
        self._supervisor: Supervisor | None = None
        self._lambda: Any = None
        self._hosting: Any = None
        self._capture: Any = None
        self._alarms: Any = None
        self._previous_moto_port: str | None = None
        self._moto_port_set = False
        self._lifecycle = threading.Lock()
        self.skipped_resource_types: set[str] = set()

    @property
    def records_dir(self) -> Path:
        """Where the supervisor records the child processes it starts."""
        return paths.process_records(self.run_dir)

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        """Where clients reach the emulated account (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def outputs(self) -> dict[str, str]:
        if self.deployment is None:
            raise LocalStackError("the local stack is not started")
        return dict(self.deployment.outputs)

    @property
    def lambda_runtime(self) -> Any:
        return self._lambda

    @property
    def hosting(self) -> Any:
        return self._hosting

    @property
    def alarms(self) -> Any:
        """The alarm evaluator (``alarms.AlarmEvaluator``)."""
        return self._alarms

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        global _active
        with _active_lock:
            if _active is not None:
                raise RuntimeError(f"a local stack already runs in this process ({_active.endpoint_url})")
            _active = self
        try:
            with self._lifecycle:
                self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        try:
            settings = LocalSettings.from_env()
        except SettingsError as exc:
            raise LocalStackError(str(exc)) from exc
        if self.state_dir is not None:  # a fresh start: stop what a dead stack left, clear the last logs
            stopped = stop_leftovers(self.records_dir)
            if stopped:
                log.warning("stopped %d processes left by a local stack that died", len(stopped))
            shutil.rmtree(self.run_dir, ignore_errors=True)
            shutil.rmtree(self.log_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # moto's Step Functions interpreter calls back into the server at http://localhost:$MOTO_PORT;
        # moto 5.2.5 reads the variable at call time (moto.settings.moto_server_port), so it is set as
        # soon as the port is known and before any execution can start.
        server = _make_server(self.host, self.port)
        server.start()
        if server.bind_error is not None:
            raise LocalStackError(f"cannot serve on {self.host}:{self.port}: {server.bind_error}")
        self._server = server
        self.port = int(server.get_host_and_port()[1])
        self._previous_moto_port = os.environ.get("MOTO_PORT")
        self._moto_port_set = True
        os.environ["MOTO_PORT"] = str(self.port)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        api = f"{self.endpoint_url}/moto-api"
        requests.post(f"{api}/reset", timeout=30).raise_for_status()
        requests.post(
            f"{api}/config",
            json={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
            timeout=30,
        ).raise_for_status()

        from dropship.local import (
            alarms,
            autoscaling,
            capture,
            cloudformation_shims,
            events_bridge,
            hosting,
            lambda_runtime,
            metrics,
            stepfunctions_fixes,
        )

        self._supervisor = Supervisor(self.records_dir).start()
        cloudformation_shims.install(self._patches, self.skipped_resource_types)
        events_bridge.install(self._patches)
        stepfunctions_fixes.install(self._patches)
        metrics.install(self._patches)
        alarms.install(self._patches)
        autoscaling.install(self._patches)
        self._lambda = lambda_runtime.LambdaRuntime(
            endpoint_url=self.endpoint_url,
            region=self.region,
            log_dir=self.log_dir,
            supervisor=self._supervisor,
            limits=lambda_runtime.Limits.from_settings(settings),
            idle_timeout_s=settings.lambda_idle_s,
        )
        self._lambda.install(self._patches)
        self._capture = capture.DataCapture(flush_s=settings.capture_flush_s).start()
        self._hosting = hosting.EndpointHost(
            project_dir=self.project_dir,
            run_dir=self.run_dir / "endpoints",
            log_dir=self.log_dir,
            supervisor=self._supervisor,
            cache_dir=paths.cache_dir(self.state_dir) if self.state_dir is not None else self.run_dir / "cache",
            startup_timeout_s=settings.endpoint_startup_timeout_s,
            startup_delay_s=settings.endpoint_startup_delay_s,
            install_timeout_s=settings.endpoint_install_timeout_s,
            metrics=metrics.InvocationMetrics(),
            capture=self._capture,
        )
        self._hosting.install(self._patches)

        self.deployment = deploy_template(
            self.project_dir,
            endpoint_url=self.endpoint_url,
            region=self.region,
            stack_name=self.stack_name,
            parameter_overrides=self._parameters(),
        )
        self._lambda.register(self.deployment.functions)
        self._alarms = alarms.AlarmEvaluator(settings.alarm_evaluation_s).start()
        log.info("local stack ready on %s", self.endpoint_url)

    def _parameters(self) -> dict[str, str]:
        declared = load_template(self.project_dir / "template.yaml").get("Parameters", {})
        defaults = {
            name: value.format(region=self.region)
            for name, value in LOCAL_PARAMETER_DEFAULTS.items()
            if name in declared
        }
        return {**defaults, **self.parameter_overrides}

    def stop(self) -> None:
        """Stop endpoint processes, Lambda workers and the server; remove the seams. Idempotent."""
        global _active
        with self._lifecycle:
            if self._alarms is not None:
                self._alarms.stop()
                self._alarms = None
            if self._hosting is not None:
                self._hosting.stop()
                self._hosting = None
            if self._capture is not None:  # what the endpoints captured is written before S3 goes
                self._capture.stop()
                self._capture = None
            if self._lambda is not None:
                self._lambda.stop()
                self._lambda = None
            if self._supervisor is not None:
                self._supervisor.stop()
                self._supervisor = None
            if self._server is not None:
                try:
                    self._server.stop()
                except Exception:  # a server that failed to bind has nothing to stop
                    log.debug("moto server stop failed", exc_info=True)
                self._server = None
            self._patches.close()
            if self._moto_port_set:
                if self._previous_moto_port is None:
                    os.environ.pop("MOTO_PORT", None)
                else:
                    os.environ["MOTO_PORT"] = self._previous_moto_port
                self._moto_port_set = False
            if self._own_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        with _active_lock:
            if _active is self:
                _active = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""The SageMaker seam: endpoints are real local processes running the project's inference container.

moto 5.2.5 marks an endpoint ``InService`` at once and answers ``InvokeEndpoint`` from a canned queue.
Here:

- ``CreateEndpoint`` records the endpoint as ``Creating`` and, in a background thread, reads the first
  production variant's model data (``ModelDataUrl``) from the emulated S3, unpacks it safely
  (``tarfile`` ``filter="data"``) and starts ``<project>/container/serve`` on a free port with a minimal
  environment (``endpoint_environment``: nothing from the developer's shell) plus the model's
  ``Environment``, one server worker unless the model's ``SAGEMAKER_MODEL_SERVER_WORKERS`` asks for more.
  A model with ``code/requirements.txt`` runs in a Python environment of its own (``environments``),
  where ``serve`` installs them as the image does; never in the developer's.
  A few start at a time (twice as many as there are cores), the others wait as ``Creating``.
  ``GET /ping`` answering 200 makes it ``InService``; the process exiting or not becoming healthy within
  ``DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT`` seconds (default 120; ``DROPSHIP_LOCAL_ENDPOINT_INSTALL_TIMEOUT``
  more, default 600, for a model with requirements) makes it ``Failed``, its ``FailureReason`` the cause
  found in its log, then the log's last lines (``failure_reason``). ``DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY``
  seconds (default 0) are waited
  before the process starts, to model SageMaker's minutes of provisioning in release benchmarks
  (``settings.LocalSettings``).
- An ``InService`` endpoint whose process exits (a crash, the OOM killer, a ``kill``) becomes ``Failed``
  with a ``FailureReason`` naming the exit, as SageMaker reports an instance failure; it is not
  restarted, so a model that crashes is seen rather than hidden by a restart loop. Deleting and creating
  it again (or a new release) brings it back.
- ``DeleteEndpoint`` of an endpoint still ``Creating`` or ``Updating`` is refused as SageMaker refuses it
  (``ValidationException`` 'Cannot update in-progress endpoint "<arn>".'). Otherwise it stops the process group
  (SIGTERM, SIGKILL after a grace period), removes its model directory, deregisters the variants' scalable
  targets (``autoscaling.deregister_endpoint``) and writes its pending data capture.
- ``DescribeEndpoint`` shows ``DataCaptureConfig`` as SageMaker's summary when one is configured and leaves it
  out otherwise (``capture.summary``).
- ``InvokeEndpoint`` forwards body, ``ContentType``, ``Accept`` and ``CustomAttributes`` to
  ``POST /invocations``. A 4xx/5xx from the container is a ``ModelError`` (HTTP 424) as SageMaker
  reports it, pointing at the local log file; an unknown endpoint or one not ``InService`` is a
  ``ValidationError``. Every forwarded invocation records SageMaker's invocation metrics in CloudWatch
  (``metrics.InvocationMetrics``), and a successful one is offered to data capture (``capture.DataCapture``).
- Every status change puts a ``SageMaker Endpoint State Change`` event (source ``aws.sagemaker``) on
  the default bus, shaped as AWS documents it (``EndpointStatus`` spelled ``IN_SERVICE``, ``CREATING``,
  ``FAILED``, ``DELETING``; times as epoch milliseconds; ``FailureReason`` when failed).

The container's stdout and stderr go to ``paths.endpoint_log`` (``<logs>/endpoints/<EndpointName>.log``),
which outlives the endpoint.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import unquote, urlparse

import requests

from dropship.local import paths
from dropship.local.capture import DataCapture, Exchange
from dropship.local.environments import EnvironmentCreationError, ModelEnvironments
from dropship.local.events_bridge import put_service_event
from dropship.local.failure_reason import FAILURE_REASON_MAX, failure_reason, start_marker
from dropship.local.ports import free_port
from dropship.local.processes import Supervisor
from dropship.local.settings import LocalSettings

if TYPE_CHECKING:
    from dropship.local.metrics import InvocationMetrics

log = logging.getLogger(__name__)

INVOCATION_TIMEOUT_S = 60.0  # SageMaker real-time endpoints give the container 60 s per request
STOP_GRACE_S = 5.0
_PING_INTERVAL_S = 0.1
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")
# SageMaker refuses to delete an endpoint in these states ('Cannot update in-progress endpoint').
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")


def event_status(status: str) -> str:
    """DescribeEndpoint's ``InService`` as the state change event spells it: ``IN_SERVICE``."""
    return _CAMEL_BOUNDARY.sub("_", status).upper()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def endpoint_environment(
    model_environment: Mapping[str, str],
    *,
    model_dir: Path,
    home: Path,
    port: int,
    region: str,
    install_requirements: bool = False,
) -> dict[str, str]:
    """The container's whole environment: what a process needs, the model's ``Environment``, SageMaker's
    variables. Nothing from the developer's shell (credentials, tokens, proxies, pip's settings) reaches a
    model. ``serve`` installs ``code/requirements.txt`` only with ``install_requirements``: when the model
    runs in an environment of its own."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # SageMaker's default is one worker per vCPU; locally one, unless the model asks for more.
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }
    for name in ("LD_LIBRARY_PATH", "TMPDIR"):  # where the interpreter finds its libraries and scratch space
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(model_environment)
    env.update(
        {
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "DROPSHIP_INSTALL_REQUIREMENTS": "1" if install_requirements else "0",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
    )
    return env


def _epoch_ms(value: datetime | None) -> float:
    return float(int((value or datetime.now(UTC)).timestamp() * 1000))


class EndpointFailure(Exception):
    """Why an endpoint could not start; the message becomes ``FailureReason``."""


@dataclass
class _Server:
    """One running (or starting) container process for an endpoint."""

    endpoint_name: str
    variant_name: str
    base_dir: Path
    log_path: Path
    log_start: int = 0
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    install_budget_s: float = 0.0  # more time to start: serve installs the model's requirements
    capture_config: Any = None  # the endpoint config's DataCaptureConfig (configs never change)
    process: Any = None  # subprocess.Popen[bytes]

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reason(self, message: str, *, with_cause: bool = True) -> str:
        """The cause found in this start's log, ``message``, the log's tail: SageMaker's FailureReason."""
        return failure_reason(message, self.log_path, self.log_start, with_cause=with_cause)


@dataclass
class _Endpoint:
    account_id: str
    region: str
    name: str
    serving: _Server | None = None
    starting: _Server | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Held while a status follows from a server change: "in service" and "its process exited" never cross.
    status_lock: threading.Lock = field(default_factory=threading.Lock)


class EndpointHost:
    """Runs SageMaker endpoints as local processes. One per local stack; ``install`` plugs it into moto."""

    def __init__(
        self,
        project_dir: Path,
        run_dir: Path,
        log_dir: Path,
        supervisor: Supervisor,
        serve_command: list[str] | None = None,
        *,
        cache_dir: Path | None = None,
        startup_timeout_s: float = LocalSettings.endpoint_startup_timeout_s,
        startup_delay_s: float = LocalSettings.endpoint_startup_delay_s,
        install_timeout_s: float = LocalSettings.endpoint_install_timeout_s,
        metrics: InvocationMetrics | None = None,
        capture: DataCapture | None = None,
    ) -> None:
        self.project_dir = Path(project_dir)
        self.run_dir = Path(run_dir)
        self.log_dir = Path(log_dir)
        self.supervisor = supervisor
        # [interpreter, script]: a model with requirements runs the script with its own environment's python
        self.serve_command = serve_command or [sys.executable, str(self.project_dir / "container" / "serve")]
        self.environments = ModelEnvironments(
            Path(cache_dir) if cache_dir is not None else self.run_dir / "cache",
            pinned_requirements=self.project_dir / "container" / "requirements.txt",
        )
        self.startup_timeout_s = startup_timeout_s
        self.startup_delay_s = startup_delay_s
        self.install_timeout_s = install_timeout_s
        self.metrics = metrics
        self.capture = capture
        self._start_slots = threading.BoundedSemaphore(2 * max(2, os.cpu_count() or 2))
        self._endpoints: dict[tuple[str, str, str], _Endpoint] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def log_path(self, endpoint_name: str) -> Path:
        return paths.endpoint_log(endpoint_name, self.log_dir)

    # -- moto seam ----------------------------------------------------------------------------------
    def install(self, patches: ExitStack) -> None:
        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        from dropship.local import capture

        host = self
        original_create = SageMakerModelBackend.create_endpoint
        original_delete = SageMakerModelBackend.delete_endpoint

        def create_endpoint(backend: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
            if endpoint_name in backend.endpoints:
                arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
                raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
            endpoint = original_create(backend, endpoint_name, endpoint_config_name, tags)
            # SageMaker's summary, or nothing (moto answers `{}`, which breaks SageMaker SDK v3's Endpoint.get)
            endpoint.data_capture_config = capture.summary(endpoint.data_capture_config)  # type: ignore[assignment]
            host._set_status(backend, endpoint, "Creating")
            host._launch(backend, endpoint, endpoint_config_name)
            return endpoint

        def delete_endpoint(backend: Any, endpoint_name: str) -> None:
            endpoint = backend.endpoints.get(endpoint_name)
            if endpoint is not None and endpoint.endpoint_status in IN_PROGRESS:
                raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
            record = host._cancel((backend.account_id, backend.region_name, endpoint_name))
            original_delete(backend, endpoint_name)
            if endpoint is not None:
                host._put_event(backend, endpoint, "Deleting")
            if record is not None:
                host._stop_servers(record)
            host._forget(backend.account_id, backend.region_name, endpoint_name)

        def invoke_endpoint_action(response: Any) -> Any:
            name = unquote(response.path.split("/")[2])
            return host.invoke(response.current_account, response.region, name, response.raw_body, response.headers)

        for owner, name, value in (
            (SageMakerModelBackend, "create_endpoint", create_endpoint),
            (SageMakerModelBackend, "delete_endpoint", delete_endpoint),
            (SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint_action),
            # moto decodes request bodies as UTF-8 unless told not to: NPY or image payloads are binary.
            (SageMakerRuntimeResponse, "use_raw_body", True),
        ):
            patches.enter_context(mock.patch.object(owner, name, value))

    # -- status and events --------------------------------------------------------------------------
    def _set_status(self, backend: Any, endpoint: Any, status: str, failure_reason: str | None = None) -> None:
        endpoint.endpoint_status = status
        endpoint.failure_reason = failure_reason
        endpoint.last_modified_time = datetime.now(UTC)
        self._put_event(backend, endpoint, status)

    def _put_event(self, backend: Any, endpoint: Any, status: str) -> None:
        put_service_event(  # never fails the endpoint operation
            backend.account_id,
            backend.region_name,
            "aws.sagemaker",
            "SageMaker Endpoint State Change",
            endpoint.arn,
            lambda: state_change_detail(backend, endpoint, status),
        )

    # -- starting -----------------------------------------------------------------------------------
    def _launch(self, backend: Any, endpoint: Any, config_name: str) -> None:
        key = (backend.account_id, backend.region_name, endpoint.endpoint_name)
        record = _Endpoint(backend.account_id, backend.region_name, endpoint.endpoint_name)
        with self._lock:
            self._endpoints[key] = record
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._bring_up,
                args=(backend, endpoint, record, config_name),
                name=f"endpoint-{endpoint.endpoint_name}",
                daemon=True,
            )
            self._threads.append(thread)
        thread.start()

    def _bring_up(self, backend: Any, endpoint: Any, record: _Endpoint, config_name: str) -> None:
        server: _Server | None = None
        try:
            server = self._prepare(backend, endpoint.endpoint_name, config_name)
            record.starting = server
            self._start_and_wait(server, record, backend, endpoint)
        except Exception as exc:  # EndpointFailure, or a bug here: either must still end the Creating state
            if not isinstance(exc, EndpointFailure):
                log.exception("endpoint %s: unexpected error", endpoint.endpoint_name)
            if server is not None:
                self._stop_server(server)
            record.starting = None
            if not record.cancelled.is_set():
                reason = str(exc) if isinstance(exc, EndpointFailure) else f"InternalFailure: {exc}"
                log.warning("endpoint %s failed: %s", endpoint.endpoint_name, reason)
                self._set_status(backend, endpoint, "Failed", reason[:FAILURE_REASON_MAX])
            return
        with record.status_lock:
            if not record.cancelled.is_set() and server.process.poll() is None:
                record.serving, record.starting = server, None
                self._set_status(backend, endpoint, "InService")
                return
        if record.cancelled.is_set():  # deleted while it started
            self._stop_server(server)
        else:  # exited the moment it passed the health check: the next ping would have failed
            self._bring_up_failed(backend, endpoint, record, server, code=server.process.returncode)

    def _prepare(self, backend: Any, endpoint_name: str, config_name: str) -> _Server:
        config = backend.endpoint_configs.get(config_name)
        if config is None or not config.production_variants:
            raise EndpointFailure(f"Could not find endpoint configuration {config_name}.")
        variant = config.production_variants[0]
        model = backend._models.get(variant.get("ModelName"))
        if model is None:
            raise EndpointFailure(f'Could not find model "{variant.get("ModelName")}".')
        container = model.primary_container or (model.containers[0] if model.containers else {})
        data_url = container.get("ModelDataUrl")
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        server = _Server(
            endpoint_name=endpoint_name,
            variant_name=variant.get("VariantName", "AllTraffic"),
            base_dir=self.run_dir / f"{endpoint_name}-{stamp}",
            log_path=self.log_path(endpoint_name),
            capture_config=config.data_capture_config,
        )
        server.model_dir.mkdir(parents=True, exist_ok=True)
        if data_url:
            _unpack(_read_s3(backend.account_id, data_url), server.model_dir, data_url)
        server.port = free_port()
        server.command = list(self.serve_command)
        requirements = requirements_file(server.model_dir, environment)
        if requirements is not None:
            try:
                server.command[0] = self.environments.python_for(requirements, interpreter=self.serve_command[0])
            except EnvironmentCreationError as exc:
                raise EndpointFailure(str(exc)) from exc
            server.install_budget_s = self.install_timeout_s
        server.env = endpoint_environment(
            environment,
            model_dir=server.model_dir,
            home=server.base_dir,
            port=server.port,
            region=backend.region_name,
            install_requirements=requirements is not None,
        )
        return server

    def _start_and_wait(self, server: _Server, record: _Endpoint, backend: Any, endpoint: Any) -> None:
        if self.startup_delay_s > 0 and record.cancelled.wait(self.startup_delay_s):
            return
        # A few servers start at a time (they are busy importing): a hundred at once on two cores would all
        # miss their health-check deadline. The others stay Creating, as SageMaker's queue of instances does.
        while not self._start_slots.acquire(timeout=_PING_INTERVAL_S):
            if record.cancelled.is_set():
                return
        try:
            self._spawn_and_wait(server, record, backend, endpoint)
        finally:
            self._start_slots.release()

    def _spawn_and_wait(self, server: _Server, record: _Endpoint, backend: Any, endpoint: Any) -> None:
        timeout_s = self.startup_timeout_s + server.install_budget_s
        server.log_path.parent.mkdir(parents=True, exist_ok=True)
        with server.log_path.open("ab") as log_file:
            server.log_start = log_file.tell()
            started = start_marker(" ".join(server.command), datetime.now(UTC).isoformat())
            log_file.write(f"{started}\n".encode())
            log_file.flush()
            server.process = self.supervisor.spawn(
                server.command,
                kind="endpoint",
                name=server.endpoint_name,
                on_exit=lambda code: self._exited(backend, endpoint, record, server, code),
                cwd=server.base_dir,
                env=server.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        deadline = time.monotonic() + timeout_s
        with requests.Session() as session:
            while not record.cancelled.is_set():
                code = server.process.poll()
                if code is not None:
                    raise EndpointFailure(
                        server.reason(
                            f"The primary container for production variant {server.variant_name} exited "
                            f"({describe_exit(code)}) before passing the ping health check."
                        )
                    )
                try:
                    if session.get(f"{server.url}/ping", timeout=1).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise EndpointFailure(
                        server.reason(
                            f"The primary container for production variant {server.variant_name} did not "
                            f"pass the ping health check within {timeout_s:.0f} seconds."
                        )
                    )
                record.cancelled.wait(_PING_INTERVAL_S)

    def _exited(self, backend: Any, endpoint: Any, record: _Endpoint, server: _Server, code: int) -> None:
        """The watcher saw a container exit: an in-service endpoint has failed (a starting one is handled
        by its start-up loop)."""
        with record.status_lock:
            if record.cancelled.is_set() or record.serving is not server:
                return
            record.serving = None
            reason = server.reason(
                f"The primary container for production variant {server.variant_name} exited unexpectedly "
                f"({describe_exit(code)}) while the endpoint was in service.",
                with_cause=False,  # an earlier request's traceback is not why it died
            )
            log.warning("endpoint %s failed: %s", server.endpoint_name, reason)
            self._set_status(backend, endpoint, "Failed", reason)
        self._stop_server(server)

    def _bring_up_failed(self, backend: Any, endpoint: Any, record: _Endpoint, server: _Server, code: int) -> None:
        reason = server.reason(
            f"The primary container for production variant {server.variant_name} exited "
            f"({describe_exit(code)}) just after passing the ping health check."
        )
        self._stop_server(server)
        record.starting = None
        self._set_status(backend, endpoint, "Failed", reason)

    # -- invoking -----------------------------------------------------------------------------------
    def invoke(
        self, account_id: str, region: str, name: str, body: Any, headers: Any
    ) -> tuple[int, dict[str, str], bytes | str]:
        """``InvokeEndpoint`` as SageMaker answers it: the container's reply, or its errors."""
        from moto.sagemaker.models import sagemaker_backends

        started = time.perf_counter()
        endpoint = sagemaker_backends[account_id][region].endpoints.get(name)
        record = self._endpoints.get((account_id, region, name))
        server = record.serving if record is not None else None
        if endpoint is None:
            return _client_error(400, "ValidationError", f"Endpoint {name} of account {account_id} not found.")
        if endpoint.endpoint_status != "InService" or server is None:
            return _client_error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {account_id} is not in service (status: {endpoint.endpoint_status}).",
            )
        forward = {"Content-Type": headers.get("Content-Type") or "application/octet-stream"}
        if headers.get("Accept"):
            forward["Accept"] = headers["Accept"]
        if headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            forward["X-Amzn-SageMaker-Custom-Attributes"] = headers["X-Amzn-SageMaker-Custom-Attributes"]
        data = body if isinstance(body, bytes) else (body or "").encode()
        sent = time.perf_counter()
        answer, status, exchange = self._forward(server, name, data, forward, headers)
        self._observe(account_id, region, endpoint, server, started, time.perf_counter() - sent, status, exchange)
        return answer

    def _forward(
        self, server: _Server, name: str, data: bytes, forward: dict[str, str], headers: Any
    ) -> tuple[tuple[int, dict[str, str], bytes | str], int, Exchange | None]:
        """POST /invocations: SageMaker's answer, the container's status (0: none) and, if it succeeded, the
        exchange for data capture."""
        log_path = server.log_path
        try:
            reply = requests.post(f"{server.url}/invocations", data=data, headers=forward, timeout=INVOCATION_TIMEOUT_S)
        except requests.Timeout:
            message = "Your invocation timed out while waiting for a response from container primary."
            return _model_error(0, message, log_path), 0, None
        except requests.RequestException as exc:
            return _model_error(0, f"Could not reach container primary: {exc}", log_path), 0, None
        if reply.status_code >= 400:
            return _model_error(reply.status_code, reply.text, log_path), reply.status_code, None
        out = {
            "Content-Type": reply.headers.get("Content-Type", "application/json"),
            "x-Amzn-Invoked-Production-Variant": server.variant_name,
        }
        custom = reply.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if custom:
            out["X-Amzn-SageMaker-Custom-Attributes"] = custom
        exchange = Exchange(
            endpoint_name=name,
            variant_name=server.variant_name,
            request_body=data,
            request_content_type=forward["Content-Type"],
            response_body=reply.content,
            response_content_type=out["Content-Type"],
            inference_id=headers.get("X-Amzn-SageMaker-Inference-Id") or None,
        )
        return (200, out, reply.content), reply.status_code, exchange

    def _observe(
        self,
        account_id: str,
        region: str,
        endpoint: Any,
        server: _Server,
        started: float,
        model_latency_s: float,
        status: int,
        exchange: Exchange | None = None,
    ) -> None:
        """SageMaker's invocation metrics, and data capture of a successful invocation. Never fails the call."""
        try:
            if self.metrics is not None:
                self.metrics.record(
                    account_id,
                    region,
                    endpoint.endpoint_name,
                    server.variant_name,
                    status=status,
                    model_latency_us=model_latency_s * 1e6,
                    overhead_latency_us=(time.perf_counter() - started - model_latency_s) * 1e6,
                    instance_count=variant_instances(endpoint, server.variant_name),
                )
            if self.capture is not None and exchange is not None:
                self.capture.capture(account_id, server.capture_config, exchange)
        except Exception:
            log.exception(
                "endpoint %s: could not record the invocation's metrics or data capture", endpoint.endpoint_name
            )

    # -- stopping -----------------------------------------------------------------------------------
    def _forget(self, account_id: str, region: str, endpoint_name: str) -> None:
        """A deleted endpoint: what it captured is written, its scalable targets deregistered, as in AWS."""
        from dropship.local import autoscaling

        try:
            autoscaling.deregister_endpoint(account_id, region, endpoint_name)
            if self.capture is not None:
                self.capture.flush(endpoint_name)
            if self.metrics is not None:
                self.metrics.forget(account_id, region, endpoint_name)
        except Exception:  # the endpoint is deleted whatever its bookkeeping does
            log.exception("endpoint %s: could not clean up after its deletion", endpoint_name)

    def _cancel(self, key: tuple[str, str, str]) -> _Endpoint | None:
        with self._lock:
            record = self._endpoints.pop(key, None)
            if record is not None:
                record.cancelled.set()
        return record

    def _stop_servers(self, record: _Endpoint) -> None:
        with record.status_lock:
            servers = [server for server in (record.starting, record.serving) if server is not None]
        for server in servers:
            self._stop_server(server)

    def _stop_server(self, server: _Server) -> None:
        if server.process is not None:
            self.supervisor.terminate(server.process, STOP_GRACE_S)
        shutil.rmtree(server.base_dir, ignore_errors=True)

    def endpoint_pid(self, account_id: str, region: str, name: str) -> int | None:
        """The serving process id of an endpoint (for tests and diagnostics)."""
        record = self._endpoints.get((account_id, region, name))
        if record is None or record.serving is None or record.serving.process is None:
            return None
        return int(record.serving.process.pid)

    def stop(self) -> None:
        """Stop every endpoint process (in parallel) and wait for the start-up threads."""
        with self._lock:
            keys = list(self._endpoints)
        records = [record for record in (self._cancel(key) for key in keys) if record is not None]
        stoppers = [threading.Thread(target=self._stop_servers, args=(record,)) for record in records]
        for thread in stoppers:
            thread.start()
        for thread in [*stoppers, *self._threads]:
            thread.join(timeout=STOP_GRACE_S * 3)
        self._threads = []


def variant_instances(endpoint: Any, variant_name: str) -> int | None:
    """The variant's current instance count (None: serverless, which has no InvocationsPerInstance)."""
    for variant in endpoint.production_variants or []:
        if variant.get("VariantName") == variant_name:
            if variant.get("CurrentServerlessConfig"):
                return None
            return int(variant.get("CurrentInstanceCount") or 1)
    return 1


def state_change_detail(backend: Any, endpoint: Any, status: str) -> dict[str, Any]:
    """``detail`` of a ``SageMaker Endpoint State Change`` event, as AWS documents it."""
    config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
    variants = config.production_variants if config is not None else []
    detail: dict[str, Any] = {
        "EndpointName": endpoint.endpoint_name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.endpoint_config_name,
        "ProductionVariants": [
            {
                "DesiredWeight": float(variant.get("InitialVariantWeight") or 1.0),
                "DesiredInstanceCount": float(variant.get("InitialInstanceCount") or 1),
            }
            for variant in variants
        ],
        "EndpointStatus": event_status(status),
        "CreationTime": _epoch_ms(endpoint.creation_time),
        "LastModifiedTime": _epoch_ms(endpoint.last_modified_time),
        "Tags": {t["Key"]: t["Value"] for t in endpoint.tags or [] if "Key" in t},
    }
    if status == "Failed" and endpoint.failure_reason:
        detail["FailureReason"] = endpoint.failure_reason
    return detail


def requirements_file(model_dir: Path, environment: Mapping[str, str]) -> Path | None:
    """The ``requirements.txt`` the container installs: beside ``SAGEMAKER_PROGRAM`` under ``code/``."""
    program = environment.get("SAGEMAKER_PROGRAM", "").strip() or "inference.py"
    code_dir = model_dir / "code"
    candidate = (code_dir / program).parent / "requirements.txt"
    if Path(program).is_absolute() or not candidate.resolve().is_relative_to(code_dir.resolve()):
        return None  # code outside the model: not installed locally (``DROPSHIP_INSTALL_REQUIREMENTS=0``)
    return candidate if candidate.is_file() else None


def _read_s3(account_id: str, url: str) -> bytes:
    from moto.s3.models import s3_backends

    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise EndpointFailure(f"Could not download model data from {url}: not an s3:// URL.")
    try:
        key = s3_backends[account_id]["aws"].get_object(parsed.netloc, parsed.path.lstrip("/"))
    except Exception as exc:
        raise EndpointFailure(f"Could not find model data at {url}. ({type(exc).__name__})") from exc
    if key is None:
        raise EndpointFailure(f"Could not find model data at {url}.")
    return bytes(key.value)


def _unpack(data: bytes, model_dir: Path, url: str) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            archive.extractall(model_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EndpointFailure(f"Failed to extract model data archive from URL {url}: {exc}") from exc


def _json_error(status: int, code: str, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    # moto takes the HTTP status of a handler's reply from its "status" header
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "status": str(status)}
    return status, headers, json.dumps(body)


def _client_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    return _json_error(status, code, {"__type": code, "message": message})


def _model_error(status: int, message: str, log_path: Path) -> tuple[int, dict[str, str], str]:
    """SageMaker's ModelError; where it names the endpoint's CloudWatch log group, the local log file."""
    kind = "client" if 400 <= status < 500 else "server"
    return _json_error(
        424,
        "ModelError",
        {
            "__type": "ModelError",
            "message": f'Received {kind} error ({status}) from primary with message "{message}". '
            f"See the endpoint's log {log_path} for more information.",
            "OriginalStatusCode": status,
            "OriginalMessage": message,
        },
    )

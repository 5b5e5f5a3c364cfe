"""The SageMaker seam: endpoints are real local processes running the project's inference container.

moto 5.2.5 marks an endpoint ``InService`` at once, has no ``UpdateEndpoint`` and answers
``InvokeEndpoint`` from a canned queue. Here:

- ``CreateEndpoint`` records the endpoint as ``Creating`` and, in a background thread, reads the first
  production variant's model data (``ModelDataUrl``) from the emulated S3, unpacks it safely
  (``tarfile`` ``filter="data"``) and starts ``<project>/container/serve`` on a free port with the
  model's ``Environment``. ``GET /ping`` answering 200 makes it ``InService``; the process exiting or
  not becoming healthy within ``DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT`` seconds (default 120) makes it
  ``Failed`` with the tail of its log as ``FailureReason``.
- ``DeleteEndpoint`` stops the process (SIGTERM to its process group, SIGKILL after a grace period) and
  removes its model directory.
- ``InvokeEndpoint`` forwards body, ``ContentType``, ``Accept`` and ``CustomAttributes`` to
  ``POST /invocations``. A 4xx/5xx from the container is a ``ModelError`` (HTTP 424) as SageMaker
  reports it; an unknown endpoint or one not ``InService`` is a ``ValidationError``.
- Every status change puts a ``SageMaker Endpoint State Change`` event (source ``aws.sagemaker``) on
  the default bus, as AWS does.
"""

from __future__ import annotations

import atexit
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
import weakref
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlparse

import requests

from dropship.local.ports import free_port

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_ENV = "DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT_S = 120.0
INVOCATION_TIMEOUT_S = 60.0  # SageMaker real-time endpoints give the container 60 s per request
STOP_GRACE_S = 5.0
FAILURE_REASON_TAIL = 800
_PING_INTERVAL_S = 0.1
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def log_tail(path: Path, limit: int = FAILURE_REASON_TAIL) -> str:
    """The last ``limit`` characters of a log, without colour codes, control characters or blank lines."""
    try:
        raw = path.read_bytes()[-(limit * 4) :].decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = _CONTROL.sub("", _ANSI.sub("", raw))
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines)[-limit:]


def _epoch_ms(value: datetime | None) -> int:
    return int((value or datetime.now(UTC)).timestamp() * 1000)


@dataclass
class _Server:
    """One running (or starting) container process for an endpoint configuration."""

    config_name: str
    variant_name: str
    model_dir: Path
    log_path: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    process.kill()
                process.wait(timeout=STOP_GRACE_S)
        shutil.rmtree(self.model_dir, ignore_errors=True)


@dataclass
class _Endpoint:
    account_id: str
    region: str
    name: str
    serving: _Server | None = None
    starting: _Server | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class EndpointFailure(Exception):
    """Why an endpoint (or an update of it) could not start; the message becomes ``FailureReason``."""


class EndpointHost:
    """Runs SageMaker endpoints as local processes. One per local stack; ``install`` plugs it into moto."""

    def __init__(self, project_dir: Path, run_dir: Path, serve_command: list[str] | None = None) -> None:
        self.project_dir = Path(project_dir)
        self.run_dir = Path(run_dir)
        self.serve_command = serve_command or [sys.executable, str(self.project_dir / "container" / "serve")]
        self._endpoints: dict[tuple[str, str, str], _Endpoint] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        _hosts.add(self)

    # -- moto seam ----------------------------------------------------------------------------------
    def install(self, patches: ExitStack) -> None:
        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        host = self
        original_create = SageMakerModelBackend.create_endpoint
        original_delete = SageMakerModelBackend.delete_endpoint

        def create_endpoint(backend: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
            if endpoint_name in backend.endpoints:
                arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
                raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
            endpoint = original_create(backend, endpoint_name, endpoint_config_name, tags)
            host._set_status(backend, endpoint, "Creating")
            host._launch(backend, endpoint, endpoint_config_name)
            return endpoint

        def delete_endpoint(backend: Any, endpoint_name: str) -> None:
            endpoint = backend.endpoints.get(endpoint_name)
            original_delete(backend, endpoint_name)
            if endpoint is not None:
                host._put_event(backend, endpoint, "Deleting")
            host._terminate((backend.account_id, backend.region_name, endpoint_name))

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
        from moto.events.models import events_backends

        detail: dict[str, Any] = {
            "EndpointName": endpoint.endpoint_name,
            "EndpointArn": endpoint.arn,
            "EndpointConfigName": endpoint.endpoint_config_name,
            "EndpointStatus": status,
            "CreationTime": _epoch_ms(endpoint.creation_time),
            "LastModifiedTime": _epoch_ms(endpoint.last_modified_time),
            "Tags": {t["Key"]: t["Value"] for t in endpoint.tags or [] if "Key" in t},
        }
        if endpoint.failure_reason:
            detail["FailureReason"] = endpoint.failure_reason
        try:
            events_backends[backend.account_id][backend.region_name].put_events(
                [
                    {
                        "Source": "aws.sagemaker",
                        "DetailType": "SageMaker Endpoint State Change",
                        "Detail": json.dumps(detail),
                        "Resources": [endpoint.arn],
                    }
                ]
            )
        except Exception:  # notifications never fail the endpoint operation
            log.exception("could not put the state change event for %s", endpoint.endpoint_name)

    # -- starting -----------------------------------------------------------------------------------
    def _launch(self, backend: Any, endpoint: Any, config_name: str) -> None:
        key = (backend.account_id, backend.region_name, endpoint.endpoint_name)
        record = _Endpoint(backend.account_id, backend.region_name, endpoint.endpoint_name)
        with self._lock:
            self._endpoints[key] = record
        thread = threading.Thread(
            target=self._bring_up,
            args=(backend, endpoint, record, config_name),
            name=f"endpoint-{endpoint.endpoint_name}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _bring_up(self, backend: Any, endpoint: Any, record: _Endpoint, config_name: str) -> None:
        server: _Server | None = None
        try:
            server = self._prepare(backend, endpoint.endpoint_name, config_name)
            record.starting = server
            self._start_and_wait(server, record.cancelled)
        except Exception as exc:  # EndpointFailure, or a bug here: either must still end the Creating state
            if not isinstance(exc, EndpointFailure):
                log.exception("endpoint %s: unexpected error", endpoint.endpoint_name)
            if server is not None:
                server.stop()
            record.starting = None
            if not record.cancelled.is_set():
                reason = str(exc) if isinstance(exc, EndpointFailure) else f"InternalFailure: {exc}"
                log.warning("endpoint %s failed: %s", endpoint.endpoint_name, reason)
                self._set_status(backend, endpoint, "Failed", reason[:1024])
            return
        if record.cancelled.is_set():
            server.stop()
            return
        record.serving, record.starting = server, None
        self._set_status(backend, endpoint, "InService")

    def _prepare(self, backend: Any, endpoint_name: str, config_name: str) -> _Server:
        config = backend.endpoint_configs.get(config_name)
        if config is None or not config.production_variants:
            raise EndpointFailure(f"Could not find endpoint configuration {config_name}.")
        variant = config.production_variants[0]
        variant_name = variant.get("VariantName", "AllTraffic")
        model = backend._models.get(variant.get("ModelName"))
        if model is None:
            raise EndpointFailure(f'Could not find model "{variant.get("ModelName")}".')
        container = model.primary_container or (model.containers[0] if model.containers else {})
        data_url = container.get("ModelDataUrl")
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        base = self.run_dir / f"{endpoint_name}-{stamp}"
        model_dir = base / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        server = _Server(config_name, variant_name, model_dir, base / "container.log")
        if data_url:
            _unpack(_read_s3(backend.account_id, data_url), model_dir, data_url)
        server.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "SM_", "SAGEMAKER_"))}
        env.update(environment)
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SAGEMAKER_BIND_TO_HOST": "127.0.0.1",
                "SAGEMAKER_BIND_TO_PORT": str(server.port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                "DROPSHIP_INSTALL_REQUIREMENTS": "0",
                "AWS_REGION": backend.region_name,
                "AWS_DEFAULT_REGION": backend.region_name,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        server.env = env
        return server

    def _start_and_wait(self, server: _Server, cancelled: threading.Event) -> None:
        timeout_s = float(os.environ.get(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S))
        with server.log_path.open("ab") as log_file:
            server.process = subprocess.Popen(
                self.serve_command,
                cwd=server.model_dir.parent,
                env=server.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: gunicorn workers are stopped with it
            )
        deadline = time.monotonic() + timeout_s
        session = requests.Session()
        try:
            while not cancelled.is_set():
                code = server.process.poll()
                if code is not None:
                    raise EndpointFailure(
                        f"The primary container for production variant {server.variant_name} exited "
                        f"with code {code} before passing the ping health check. Container log:\n"
                        f"{log_tail(server.log_path)}"
                    )
                try:
                    if session.get(f"{server.url}/ping", timeout=1).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise EndpointFailure(
                        f"The primary container for production variant {server.variant_name} did not pass "
                        f"the ping health check within {timeout_s:.0f} seconds. Container log:\n"
                        f"{log_tail(server.log_path)}"
                    )
                cancelled.wait(_PING_INTERVAL_S)
        finally:
            session.close()

    # -- invoking -----------------------------------------------------------------------------------
    def invoke(
        self, account_id: str, region: str, name: str, body: Any, headers: Any
    ) -> tuple[int, dict[str, str], bytes | str]:
        """``InvokeEndpoint`` as SageMaker answers it: the container's reply, or its errors."""
        from moto.sagemaker.models import sagemaker_backends

        endpoint = sagemaker_backends[account_id][region].endpoints.get(name)
        record = self._endpoints.get((account_id, region, name))
        if endpoint is None:
            return _client_error(400, "ValidationError", f"Endpoint {name} of account {account_id} not found.")
        if endpoint.endpoint_status != "InService" or record is None or record.serving is None:
            return _client_error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {account_id} is not in service (status: {endpoint.endpoint_status}).",
            )
        server = record.serving
        forward = {"Content-Type": headers.get("Content-Type") or "application/octet-stream"}
        if headers.get("Accept"):
            forward["Accept"] = headers["Accept"]
        if headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            forward["X-Amzn-SageMaker-Custom-Attributes"] = headers["X-Amzn-SageMaker-Custom-Attributes"]
        data = body if isinstance(body, bytes) else (body or "").encode()
        try:
            reply = requests.post(f"{server.url}/invocations", data=data, headers=forward, timeout=INVOCATION_TIMEOUT_S)
        except requests.Timeout:
            return _model_error(
                0,
                "Your invocation timed out while waiting for a response from container primary.",
                name,
                account_id,
                region,
            )
        except requests.RequestException as exc:
            return _model_error(0, f"Could not reach container primary: {exc}", name, account_id, region)
        if reply.status_code >= 400:
            return _model_error(reply.status_code, reply.text, name, account_id, region)
        out = {
            "Content-Type": reply.headers.get("Content-Type", "application/json"),
            "x-Amzn-Invoked-Production-Variant": server.variant_name,
        }
        custom = reply.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if custom:
            out["X-Amzn-SageMaker-Custom-Attributes"] = custom
        return 200, out, reply.content

    # -- stopping -----------------------------------------------------------------------------------
    def _terminate(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            record = self._endpoints.pop(key, None)
        if record is None:
            return
        record.cancelled.set()
        for server in (record.starting, record.serving):
            if server is not None:
                server.stop()

    def endpoint_pid(self, account_id: str, region: str, name: str) -> int | None:
        """The serving process id of an endpoint (for tests and `dropship local status`)."""
        record = self._endpoints.get((account_id, region, name))
        if record is None or record.serving is None or record.serving.process is None:
            return None
        return int(record.serving.process.pid)

    def stop(self) -> None:
        """Stop every endpoint process and wait for the watcher threads."""
        with self._lock:
            keys = list(self._endpoints)
        for key in keys:
            self._terminate(key)
        for thread in self._threads:
            thread.join(timeout=STOP_GRACE_S * 2)
        self._threads = []


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


def _model_error(status: int, message: str, name: str, account_id: str, region: str) -> tuple[int, dict[str, str], str]:
    kind = "client" if 400 <= status < 500 else "server"
    log_group = f"/aws/sagemaker/Endpoints/{name}"
    return _json_error(
        424,
        "ModelError",
        {
            "__type": "ModelError",
            "message": f'Received {kind} error ({status}) from primary with message "{message}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group={log_group} in account {account_id} for more information.",
            "OriginalStatusCode": status,
            "OriginalMessage": message,
            "LogStreamArn": f"arn:aws:logs:{region}:{account_id}:log-group:{log_group}",
        },
    )


_hosts: weakref.WeakSet[EndpointHost] = weakref.WeakSet()


@atexit.register
def _stop_all_endpoints() -> None:
    """No endpoint process outlives the interpreter that started it."""
    for host in list(_hosts):
        try:
            host.stop()
        except Exception:  # best effort at exit
            log.debug("endpoint cleanup failed", exc_info=True)

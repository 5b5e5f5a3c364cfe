"""The HTTP-free core: loading the user's hooks and model, content negotiation, mapping errors to statuses.

`Handler.load(settings)` runs once per worker; `Handler.invoke(...)` runs one invocation synchronously
(the server calls it on a worker thread) and returns an `Invocation` or raises an `InvocationError`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from dropship_serve.errors import (
    BadRequestError,
    InvocationError,
    ModelError,
    ModelLoadError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)
from dropship_serve.logs import get_logger
from dropship_serve.settings import Settings

DEFAULT_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPES = ("application/json", "text/csv")
"""Bodies of these types reach input_fn and transform_fn as `str`, as in SageMaker's containers (UTF8_TYPES)."""
CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"
_UNSUPPORTED_FORMAT_NAMES = frozenset({"UnsupportedFormatError"})  # sagemaker-inference-toolkit's error


@dataclass
class Context:
    """Passed as the optional last argument of any hook.

    `headers` are the request headers (lower-case names), `custom_attributes` the value of
    `X-Amzn-SageMaker-Custom-Attributes`; set `response_custom_attributes` (or call
    `set_custom_attributes`) to return that header. Hooks called at load time get empty headers.
    """

    model_dir: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    accept: str | None = None
    response_custom_attributes: str | None = None
    # Set by the default input_fn for a `{"instances": [...]}` body: the default output_fn answers in kind.
    answer_predictions: bool = field(default=False, init=False, repr=False)

    @property
    def custom_attributes(self) -> str | None:
        return self.headers.get(CUSTOM_ATTRIBUTES_HEADER)

    def set_custom_attributes(self, value: str) -> None:
        self.response_custom_attributes = value


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str
    custom_attributes: str | None = None
    status: int = 200


# -- content negotiation ---------------------------------------------------------------------------------


def media_type(header: str | None) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`; empty for a missing header."""
    return (header or "").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str, header: str | None) -> str | bytes:
    """JSON and CSV bodies as text (in the header's charset, UTF-8 by default), any other as bytes."""
    if content_type not in TEXT_CONTENT_TYPES:
        return body
    charset = "utf-8"
    for param in (header or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset)
    except LookupError:
        raise UnsupportedContentTypeError(f"charset {charset!r} of the Content-Type is unknown") from None
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the {content_type} body is not valid {charset}: {exc}") from None


def parse_accept(header: str | None) -> list[str]:
    """Media ranges of an Accept header, best first: by q-value, then specificity, then order; q=0 dropped."""
    ranked = []
    for index, item in enumerate((header or "").split(",")):
        parts = item.split(";")
        media = parts[0].strip().lower()
        if not media:
            continue
        if media == "*":
            media = "*/*"
        if media.count("/") != 1:
            continue
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        specificity = 0 if media == "*/*" else 1 if media.endswith("/*") else 2
        ranked.append((-q, -specificity, index, media))
    return [media for *_, media in sorted(ranked)]


def accept_candidates(header: str | None, default: str, supported: tuple[str, ...] | None) -> list[str]:
    """The concrete media types to try for a response, best first.

    `*/*` (and a missing header) means `default`. With `supported` known (the default output_fn),
    ranges are matched against it; otherwise concrete types are tried as given.
    """
    ranges = parse_accept(header) if header and header.strip() else ["*/*"]
    candidates: list[str] = []
    for media in ranges:
        if media == "*/*":
            options = [default] if supported is None or default in supported else list(supported[:1])
        elif media.endswith("/*"):
            prefix = media[:-1]
            if default.startswith(prefix):
                options = [default]
            else:
                options = [s for s in supported or () if s.startswith(prefix)][:1]
        else:
            options = [media] if supported is None or media in supported else []
        candidates.extend(option for option in options if option not in candidates)
    return candidates


# -- hooks -----------------------------------------------------------------------------------------------


class Hook:
    """A user or default hook, called with the context appended when its signature takes one more argument."""

    def __init__(self, name: str, fn: Callable[..., Any], arity: int, is_default: bool) -> None:
        self.name = name
        self.fn = fn
        self.is_default = is_default
        self.takes_context = _accepts_positional(fn, arity + 1)

    def __call__(self, *args: Any, context: Context) -> Any:
        if self.takes_context:
            return self.fn(*args, context)
        return self.fn(*args)


def _accepts_positional(fn: Callable[..., Any], count: int) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= count


_ARITY = {
    "pre_model_fn": 1,
    "model_fn": 1,
    "model_warmup_fn": 2,
    "input_fn": 2,
    "predict_fn": 2,
    "output_fn": 2,
    "transform_fn": 4,
    "execution_parameters_fn": 0,
}
"""Each hook's arguments, before the optional context: those of sagemaker-inference's Transformer (and
`execution_parameters_fn`, which the scikit-learn image's server calls for GET /execution-parameters)."""
_OPTIONAL_HOOKS = ("pre_model_fn", "model_warmup_fn", "transform_fn", "execution_parameters_fn")


def find_program(settings: Settings) -> str | None:
    """Path of the user's `inference.py`: `<model>/code/` first, then the code baked into the image."""
    if os.path.isabs(settings.program):
        candidates = [settings.program]
    else:
        candidates = [os.path.join(directory, settings.program) for directory in settings.code_dirs]
    for path in candidates:
        if os.path.isfile(path):
            return path
    if settings.program_explicit:
        raise ModelLoadError(f"SAGEMAKER_PROGRAM={settings.program} not found in {', '.join(candidates)}")
    return None


def requirements_file(settings: Settings) -> str | None:
    """The `requirements.txt` next to the program (`<model>/code/` when there is none), if there is one."""
    try:
        program = find_program(settings)
    except ModelLoadError:  # the worker reports the missing program
        program = None
    code_dir = os.path.dirname(program) if program else os.path.join(settings.model_dir, "code")
    path = os.path.join(code_dir, "requirements.txt")
    return path if os.path.isfile(path) else None


def import_program(path: str) -> ModuleType:
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)  # helper modules next to inference.py import normally
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


@dataclass(frozen=True)
class RequestCheck:
    """What can be refused from the headers alone, before the body is read: 406, and 415 with the default
    input_fn. Plain data, so the HTTP process checks requests for the inference processes that hold the hooks.

    `accepts` is None unless the default output_fn answers (any Accept is then worth trying), and
    `content_types` None unless the default input_fn reads the body.
    """

    default_accept: str
    accepts: tuple[str, ...] | None
    content_types: tuple[str, ...] | None

    def check_request(self, headers: Mapping[str, str]) -> list[str]:
        """Returns the Accept candidates for `Handler.invoke`."""
        accepts = self.check_accept(headers.get("accept"))
        if self.content_types is not None:
            content_type = media_type(headers.get("content-type")) or DEFAULT_CONTENT_TYPE
            if content_type not in self.content_types:
                raise UnsupportedContentTypeError(
                    f"Content-Type {content_type!r} is not supported; use one of {', '.join(self.content_types)}"
                )
        return accepts

    def check_accept(self, accept_header: str | None) -> list[str]:
        """Accept candidates; with the default output_fn a hopeless Accept is a 406 before any work."""
        candidates = accept_candidates(accept_header, self.default_accept, self.accepts)
        if not candidates:
            supported = ", ".join(self.accepts or ())
            raise UnsupportedAcceptError(f"cannot produce any of Accept: {accept_header}; supported: {supported}")
        return candidates


# -- the handler -----------------------------------------------------------------------------------------


class Handler:
    """The loaded model and its hooks; `invoke` is thread-safe as far as the user's hooks are."""

    def __init__(self, settings: Settings, hooks: dict[str, Hook | None], model: Any, program: str | None):
        self.settings = settings
        self.model = model
        self.program = program
        self.model_fn = hooks["model_fn"]
        self.input_fn = hooks["input_fn"]
        self.predict_fn = hooks["predict_fn"]
        self.output_fn = hooks["output_fn"]
        self.transform_fn = hooks["transform_fn"]
        self.execution_parameters_fn = hooks["execution_parameters_fn"]
        from dropship_serve import defaults

        output = self.output_fn
        default_output = self.transform_fn is None and output is not None and output.is_default
        default_input = self.input_fn is not None and self.input_fn.is_default
        self.request_check = RequestCheck(
            settings.default_accept,
            defaults.ACCEPTS if default_output else None,
            defaults.CONTENT_TYPES if default_input else None,
        )
        self._log = get_logger()

    @classmethod
    def load(cls, settings: Settings) -> Handler:
        """Import `inference.py`, load the model and warm it up (`serve` installed its requirements).

        Raises ModelLoadError with a message that says what failed; the caller exits the process.
        """
        from dropship_serve import compat, defaults

        log = get_logger()
        if not os.path.isdir(settings.model_dir):
            raise ModelLoadError(f"model directory {settings.model_dir} does not exist (SM_MODEL_DIR)")
        started = time.monotonic()
        program = find_program(settings)
        compat.install()
        module = import_program(program) if program else None
        hooks = resolve_hooks(module, defaults)
        context = Context(model_dir=settings.model_dir)
        model_fn = hooks["model_fn"]
        assert model_fn is not None
        pre_model_fn = hooks["pre_model_fn"]
        if pre_model_fn is not None:
            _run_at_load(pre_model_fn, settings.model_dir, context=context)
        model = _run_at_load(model_fn, settings.model_dir, context=context)
        warmup = hooks["model_warmup_fn"]
        if warmup is not None:
            _run_at_load(warmup, settings.model_dir, model, context=context)
        elif hooks["predict_fn"] is not None and hooks["predict_fn"].is_default:
            try:
                defaults.warmup(model)
            except Exception:
                log.warning("default warm-up failed", exc_info=True, extra={"event": "warmup_skipped"})
        handler = cls(settings, hooks, model, program)
        log.info(
            "model loaded",
            extra={
                "event": "model_loaded",
                "model_dir": settings.model_dir,
                "program": program,
                "hooks": sorted(n for n, h in hooks.items() if h is not None and not h.is_default),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return handler

    # -- one invocation -----------------------------------------------------------------------------

    def check_accept(self, accept_header: str | None) -> list[str]:
        return self.request_check.check_accept(accept_header)

    def invoke(self, body: bytes, headers: Mapping[str, str], accepts: list[str] | None = None) -> Invocation:
        content_type_header = headers.get("content-type")
        content_type = media_type(content_type_header) or DEFAULT_CONTENT_TYPE
        if accepts is None:
            accepts = self.check_accept(headers.get("accept"))
        context = Context(self.settings.model_dir, headers, content_type, accepts[0])
        payload = decode_body(body, content_type, content_type_header)
        try:
            if self.transform_fn is not None:
                transform = self.transform_fn
                result = self._call(
                    transform, "transform", self.model, payload, content_type, accepts[0], context=context
                )
                output = as_output(result, accepts[0], transform)
            else:
                assert self.input_fn and self.predict_fn and self.output_fn
                data = self._call(self.input_fn, "input", payload, content_type, context=context)
                prediction = self._call(self.predict_fn, "predict", data, self.model, context=context)
                output = self._encode(prediction, accepts, context)
        except InvocationError:
            raise
        except Exception as exc:  # a hook returned something unusable
            raise self._model_error(exc, str(exc)) from exc
        if len(output.body) > self.settings.max_payload_bytes:
            raise self._model_error(
                None,
                f"the response body is {len(output.body)} bytes, over the {self.settings.max_payload_bytes} limit",
            )
        return Invocation(output.body, output.content_type, context.response_custom_attributes, output.status)

    def execution_parameters(self) -> Output:
        """The answer of the user's execution_parameters_fn to GET /execution-parameters (JSON by default)."""
        hook = self.execution_parameters_fn
        assert hook is not None
        try:
            return as_output(hook(context=Context(self.settings.model_dir)), "application/json", hook)
        except Exception as exc:
            raise self._model_error(exc, f"{_where(hook)} raised {type(exc).__name__}") from exc

    def _encode(self, prediction: Any, accepts: list[str], context: Context) -> Output:
        output_fn = self.output_fn
        assert output_fn is not None
        for accept in accepts:
            context.accept = accept
            try:
                result = output_fn(prediction, accept, context=context)
            except Exception as exc:
                if _is_unsupported_format(exc):
                    continue
                raise self._map(exc, output_fn, "output") from exc
            return as_output(result, accept, output_fn)
        raise UnsupportedAcceptError(f"{_where(output_fn)} cannot produce any of: {', '.join(accepts)}")

    def _call(self, hook: Hook, phase: str, *args: Any, context: Context) -> Any:
        try:
            return hook(*args, context=context)
        except Exception as exc:
            raise self._map(exc, hook, phase) from exc

    def _map(self, exc: Exception, hook: Hook, phase: str) -> InvocationError:
        """Turn an exception from a hook into the error the client sees."""
        if isinstance(exc, InvocationError):
            return exc
        status = getattr(exc, "status_code", None)  # sagemaker-inference's BaseInferenceToolkitError and the like
        if isinstance(status, int) and 400 <= status < 600:
            message = str(getattr(exc, "message", None) or exc or f"{_where(hook)} failed")
            if status >= 500:
                self._log_failure(exc, f"{_where(hook)} raised {type(exc).__name__} with status {status}")
            error = InvocationError(message)
            error.status, error.code = status, "ClientError" if status < 500 else "ModelError"
            return error
        if _is_unsupported_format(exc):
            if phase == "output":
                return UnsupportedAcceptError(str(exc))
            return UnsupportedContentTypeError(str(exc))
        if phase == "input" and isinstance(exc, ValueError):
            return BadRequestError(f"{_where(hook)} could not decode the body: {_short(exc)}")
        return self._model_error(exc, f"{_where(hook)} raised {type(exc).__name__}")

    def _model_error(self, exc: Exception | None, message: str) -> ModelError:
        error_id = self._log_failure(exc, message)
        return ModelError(f"{message}; see the container log for error_id {error_id}", error_id)

    def _log_failure(self, exc: Exception | None, message: str) -> str:
        error_id = uuid.uuid4().hex[:16]
        self._log.error(
            message,
            exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
            extra={"event": "invocation_failed", "error_id": error_id},
        )
        return error_id


def _run_at_load(hook: Hook, *args: Any, context: Context) -> Any:
    try:
        return hook(*args, context=context)
    except Exception as exc:
        raise ModelLoadError(f"{_where(hook)} failed: {type(exc).__name__}: {exc}") from exc


def resolve_hooks(module: ModuleType | None, defaults: ModuleType) -> dict[str, Hook | None]:
    """The user's hooks where defined, the defaults elsewhere; transform_fn excludes the three others."""
    user = {name: getattr(module, name, None) for name in _ARITY} if module else dict.fromkeys(_ARITY)
    for name, fn in user.items():
        if fn is not None and not callable(fn):
            raise ModelLoadError(f"{name} in {module.__file__ if module else '?'} is not a function")
    if user["transform_fn"] and any(user[name] for name in ("input_fn", "predict_fn", "output_fn")):
        raise ModelLoadError("define either transform_fn or input_fn/predict_fn/output_fn, not both")
    hooks: dict[str, Hook | None] = {}
    for name, arity in _ARITY.items():
        fn = user[name]
        if fn is not None:
            hooks[name] = Hook(name, fn, arity, is_default=False)
        elif name in _OPTIONAL_HOOKS or (user["transform_fn"] and name != "model_fn"):
            hooks[name] = None
        else:
            hooks[name] = Hook(name, getattr(defaults, name), arity, is_default=True)
    return hooks


def _is_unsupported_format(exc: Exception) -> bool:
    return isinstance(exc, (UnsupportedAcceptError, UnsupportedContentTypeError)) or (
        type(exc).__name__ in _UNSUPPORTED_FORMAT_NAMES
    )


@dataclass(frozen=True)
class Output:
    body: bytes
    content_type: str
    status: int = 200


def as_output(result: Any, accept: str, hook: Hook) -> Output:
    """What output_fn or transform_fn returned, as the response SageMaker's containers would send.

    - `bytes` or `str` (UTF-8): sent with the Accept type, as sagemaker-inference does;
    - `(body, content_type)`: as sagemaker-inference and the framework images take it;
    - a response object with `get_data()` and `status_code` (`worker.Response`, Flask's or werkzeug's):
      its body, Content-Type and status, as the framework images' Flask server sends it;
    - a `dict` or `list`: JSON, as that Flask server sends it (sorted keys, compact, a final newline).
    """
    if isinstance(result, tuple) and len(result) >= 2:
        body, content_type = result[0], result[1]
        if not isinstance(content_type, str):
            raise TypeError(f"{_where(hook)} returned a content type of {type(content_type).__name__}, not str")
        return Output(_as_bytes(body, hook), content_type)
    if callable(getattr(result, "get_data", None)) and isinstance(getattr(result, "status_code", None), int):
        status = result.status_code
        if not 200 <= status < 600:
            raise TypeError(f"{_where(hook)} returned a response with status {status}")
        headers = getattr(result, "headers", None) or {}
        content_type = headers.get("Content-Type") or getattr(result, "content_type", None) or accept
        return Output(_as_bytes(result.get_data(), hook), str(content_type), status)
    if isinstance(result, (dict, list)):
        text = json.dumps(result, default=json_default, sort_keys=True, separators=(",", ":")) + "\n"
        return Output(text.encode(), "application/json")
    return Output(_as_bytes(result, hook), accept)


def _as_bytes(body: Any, hook: Hook) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        f"{_where(hook)} must return bytes, str, (body, content_type), a response object, a dict or a list; "
        f"got {type(body).__name__}"
    )


def json_default(value: Any) -> Any:
    """What sagemaker-inference's JSON encoder does with what json cannot encode: `.tolist()`, else fail."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _where(hook: Hook) -> str:
    return f"default {hook.name}" if hook.is_default else hook.name


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."

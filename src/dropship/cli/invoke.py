"""``dropship invoke``: resolve the alias and call the endpoint it points at, as any client would."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import ClientError

from dropship.aws import error_code, model_error
from dropship.cli.errors import CliError, one_line
from dropship.cli.report import unknown_model
from dropship.cli.stack import Stack
from dropship.names import check_model_name


def run(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    model = check_model_name(args.model)
    body = _body(args)
    stack = stack_factory()
    aliases = stack.aliases()
    record = aliases.get(model, args.alias)
    if record is None:
        if not aliases.all_for(model) and not stack.table().releases(model):
            raise unknown_model(stack, model)
        raise CliError(f"{model} has no alias {args.alias!r} (no successful release on it yet)")
    request = {"EndpointName": record.endpoint_name, "Body": body, "ContentType": args.content_type}
    if args.accept:
        request["Accept"] = args.accept
    try:
        response = stack.client("sagemaker-runtime").invoke_endpoint(**request)
    except ClientError as exc:
        where = f"endpoint {record.endpoint_name} ({model} version {record.version})"
        answer = model_error(exc)
        if answer is not None:
            raise CliError(f"{where} returned {answer[0]}: {one_line(answer[1], 500)}") from exc
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise CliError(f"{where}: {error_code(exc)}: {one_line(str(message), 500)}") from exc
    payload = response["Body"].read()
    if sys.stdout.isatty() and not payload.endswith(b"\n"):
        payload += b"\n"
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is not None:
        binary.write(payload)
        binary.flush()
    else:
        sys.stdout.write(payload.decode("utf-8", "replace"))
    return 0


def _body(args: argparse.Namespace) -> bytes:
    if args.body_file is not None:
        try:
            return Path(args.body_file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.body_file}: {exc.strerror or exc}") from exc
    return str(args.body).encode()

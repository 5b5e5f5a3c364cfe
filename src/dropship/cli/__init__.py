"""The ``dropship`` command line: release, follow, inspect, roll back, invoke and read the logs of models;
run the local stack.

``main(argv)`` returns the exit code: 0 on success, 1 with a one-line ``dropship: error: ...`` on stderr
for an expected failure, 2 for a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from dropship import __version__
from dropship.alias import DEFAULT_ALIAS
from dropship.cli.errors import CliError, one_line
from dropship.cli.stack import LOCAL_HOST, LOCAL_PORT, Stack, Target, local_port, unreachable_message
from dropship.errors import DropshipError

__all__ = ["CliError", "build_parser", "main"]

Command = Callable[[argparse.Namespace, Callable[[], Stack]], int]


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dropship: error: {message} (see `{self.prog} --help`)\n")


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before or after the command; on subcommands they only override when given."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--local",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="use the local stack on http://127.0.0.1:$DROPSHIP_LOCAL_PORT (default port 4566; region us-east-1, "
        "any credentials); DROPSHIP_ENDPOINT_URL, when set, names the URL instead",
    )
    parser.add_argument(
        "--stack-name", default=default, help="the deployed stack (default: $DROPSHIP_STACK_NAME or dropship)"
    )
    parser.add_argument("--region", default=default, help="AWS region (default: your AWS configuration)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dropship",
        description="Release models to Amazon SageMaker by dropping them in S3, and watch, roll back and invoke them.",
    )
    parser.add_argument("--version", action="version", version=f"dropship {__version__}")
    _global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    release = commands.add_parser(
        "release",
        parents=[common],
        help="upload a model (folder or .tar.gz) to start a release",
        description="Pack PATH (a folder, or a .tar.gz as it is), upload the manifest then the tarball to "
        "models/<model>/<version>/, and optionally follow the release it starts. A release.json at the top of "
        "the folder is the manifest (unless --manifest names another) and is not packed.",
    )
    release.add_argument("path", metavar="PATH", help="model folder (packed into model.tar.gz) or a .tar.gz file")
    release.add_argument("--model", "-m", required=True, help="model name, e.g. churn")
    release.add_argument("--version", required=True, help="version, e.g. 3 or 1.4.0")
    release.add_argument(
        "--manifest", metavar="FILE", help="the manifest to upload with it (default: PATH/release.json, if any)"
    )
    release.add_argument("--wait", action="store_true", help="follow the release; exit 0 only if it succeeds")
    release.add_argument(
        "--timeout", type=_positive, default=3600.0, metavar="SECONDS", help="how long --wait waits (default 3600)"
    )
    release.set_defaults(handler=_lazy("dropship.cli.release", "run"))

    status = commands.add_parser(
        "status", parents=[common], help="aliases and the last release of every model (or one)"
    )
    status.add_argument("model", nargs="?", metavar="MODEL")
    status.add_argument("--json", action="store_true", help="print the raw records as JSON")
    status.set_defaults(handler=_lazy("dropship.cli.report", "status"))

    history = commands.add_parser("history", parents=[common], help="every release attempt of a model, newest first")
    history.add_argument("model", metavar="MODEL")
    history.add_argument("--limit", type=_positive_int, default=0, metavar="N", help="only the newest N attempts")
    history.add_argument("--json", action="store_true", help="print the raw records as JSON")
    history.set_defaults(handler=_lazy("dropship.cli.report", "history"))

    rollback = commands.add_parser("rollback", parents=[common], help="point the alias back at a retained release")
    rollback.add_argument("model", metavar="MODEL")
    rollback.add_argument("--to", metavar="VERSION", help="the version to go back to (default: the previous one)")
    rollback.add_argument("--alias", default=DEFAULT_ALIAS, help=f"the alias to move (default {DEFAULT_ALIAS})")
    rollback.set_defaults(handler=_lazy("dropship.cli.rollback", "run"))

    invoke = commands.add_parser("invoke", parents=[common], help="call the endpoint an alias points at")
    invoke.add_argument("model", metavar="MODEL")
    body = invoke.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="request body")
    body.add_argument("--body-file", metavar="FILE", help="file holding the request body")
    invoke.add_argument("--content-type", default="application/json", help="default application/json")
    invoke.add_argument("--accept", help="Accept header")
    invoke.add_argument("--alias", default=DEFAULT_ALIAS, help=f"the alias to resolve (default {DEFAULT_ALIAS})")
    invoke.set_defaults(handler=_lazy("dropship.cli.invoke", "run"))

    logs = commands.add_parser(
        "logs",
        parents=[common],
        help="the endpoint's container log, or a release's task logs",
        description="Print the container log of the endpoint an alias points at (or of a version's newest "
        "release), or with --execution the Lambda task logs of that release. From CloudWatch Logs, or from "
        "the local stack's log files.",
    )
    logs.add_argument("model", metavar="MODEL")
    logs.add_argument("--version", help="that version's newest release, instead of the alias")
    logs.add_argument("--alias", default=DEFAULT_ALIAS, help=f"the alias to resolve (default {DEFAULT_ALIAS})")
    logs.add_argument(
        "--execution", action="store_true", help="the release's task (Lambda) logs instead of the endpoint's"
    )
    logs.add_argument(
        "--since", metavar="WHEN", help="only newer lines: a duration ago (30s, 10m, 2h, 1d) or a UTC time (ISO 8601)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.set_defaults(handler=_lazy("dropship.cli.logs", "run"))

    local = commands.add_parser("local", help="run the local stack (an emulated AWS account on this machine)")
    local_commands = local.add_subparsers(dest="local_command", metavar="COMMAND", parser_class=_Parser)
    local_commands.required = True
    up = local_commands.add_parser("up", help="start it and return once it is ready (it runs in the background)")
    mode = up.add_mutually_exclusive_group()
    mode.add_argument(
        "--detach", "-d", action="store_true", help="run in the background; stop with `local down` (the default)"
    )
    mode.add_argument("--foreground", action="store_true", help="stay in the foreground until Ctrl-C instead")
    up.add_argument("--port", type=int, default=None, help=f"default $DROPSHIP_LOCAL_PORT, else {LOCAL_PORT}")
    up.add_argument("--host", default=LOCAL_HOST, help=f"default {LOCAL_HOST}")
    up.add_argument("--project-dir", help="the dropship repository (default: this installation's)")
    up.add_argument(
        "--timeout", type=_positive, default=180.0, metavar="SECONDS", help="how long to wait for it to be ready"
    )
    local_commands.add_parser("down", help="stop the detached local stack")
    local_commands.add_parser("status", help="is it running, where, and its stack outputs")
    local.set_defaults(handler=_lazy("dropship.cli.local", "run"))
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _lazy(module: str, function: str) -> Command:
    """Import a command's module only when it runs, so ``dropship --help`` stays fast."""

    def command(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
        import importlib

        handler: Command = getattr(importlib.import_module(module), function)
        return handler(args, stack_factory)

    return command


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    target: Target | None = None

    def stack_factory() -> Stack:
        assert target is not None
        return Stack(target)

    try:
        target = Target.from_options(local=args.local, region=args.region, stack_name=args.stack_name)
        if getattr(args, "local_command", None) == "up" and args.port is None:
            args.port = local_port()
        return int(args.handler(args, stack_factory))
    except CliError as exc:
        return _fail(str(exc), exc.exit_code)
    except DropshipError as exc:
        return _fail(f"{exc.code}: {exc}")
    except (NoCredentialsError, PartialCredentialsError) as exc:
        return _fail(f"AWS credentials are missing or incomplete ({exc}): configure them, or use --local")
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        return _fail(unreachable_message(target, exc) if target else str(exc))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return _fail(f"AWS refused {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', '')}")
    except ProfileNotFound as exc:
        return _fail(f"{exc}: check AWS_PROFILE and ~/.aws/config")
    except BotoCoreError as exc:
        return _fail(f"AWS call failed: {exc}")
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`dropship logs ... | head`): stop quietly, as the Python docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _fail(message: str, code: int = 1) -> int:
    sys.stdout.flush()
    print(f"dropship: error: {one_line(message)}", file=sys.stderr)
    return code

"""``python -m dropship.local``: run the local stack in the foreground until SIGINT or SIGTERM.

Prints one ready line (``dropship local stack ready: <endpoint> <outputs JSON>``) on stdout once the stack
is deployed, so a supervisor (``dropship local up --detach``) can wait for it; exits 0 after a clean stop,
1 if the stack could not start (reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dropship.local.deploy import DeployError
from dropship.local.paths import READY_PREFIX
from dropship.local.stack import LocalStack, LocalStackError

__all__ = ["READY_PREFIX", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dropship.local", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4566, help="port to serve on (default 4566; 0 = any free)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding template.yaml")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--run-dir", type=Path, default=None, help="working files and logs (default: a temporary dir)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep logs in <dir>/logs and working files in <dir>/run (what `dropship local up` passes)",
    )
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="KEY=VALUE", help="template parameter override"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = dict(item.split("=", 1) for item in args.parameter if "=" in item)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()  # only set a flag here; stopping happens on the main thread

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = LocalStack(
        args.project_dir,
        host=args.host,
        port=args.port,
        region=args.region,
        parameter_overrides=overrides,
        run_dir=args.run_dir,
        state_dir=args.state_dir,
    )
    try:
        stack.start()
    except (LocalStackError, DeployError, OSError) as exc:
        print(f"dropship local: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{READY_PREFIX} {stack.endpoint_url} {json.dumps(stack.outputs, sort_keys=True)}", flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `poolconform` command: argument parsing and exit statuses.

Exit 0: nothing unexpected; 1: an unexpected disagreement; 2: a usage, config or input
error, reported as one line on stderr with no traceback. Each subcommand lives in
poolconform/commands/<name>.py with `add_parser(subparsers)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from poolconform import __version__
from poolconform.environment import check_environment
from poolconform.errors import PoolconformError

COMMANDS = ("run", "check", "export", "backends", "merge", "repro", "explain", "bench", "diff", "scan", "env")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="poolconform", description="Check whether deep learning frameworks agree on pooling.")
    parser.add_argument("--version", action="version", version=f"poolconform {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"poolconform.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"poolconform.commands.{name}":
                raise
            continue  # a command whose module is not part of this build
        module.add_parser(sub)
    return parser


class _PipeSafe:
    """A text stream that survives its reader going away (`poolconform ... | head`).

    The verdict decides the exit status, not what happens to stdout: after a broken
    pipe the rest of the output goes to /dev/null (so the final flush at exit cannot
    fail either) and the command carries on to its own exit status.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def _sink(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._sink()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._sink()
            try:
                self._stream.flush()  # the buffer now drains into /dev/null
            except OSError:
                pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (s if s is None or isinstance(s, _PipeSafe) else _PipeSafe(s) for s in streams)
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        sys.stdout, sys.stderr = streams


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()  # a bad POOLCONFORM_* number: one line now, not a failure half way
        return int(args.handler(args) or 0)
    except PoolconformError as exc:
        print(f"poolconform: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("poolconform: interrupted; finished records are kept (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

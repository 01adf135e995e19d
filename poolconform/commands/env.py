"""`poolconform env create NAME`: a Python environment for a backend (README "Backends in
their own environments"): poolconform plus the given requirements, built with uv when it is
on PATH, else venv + pip. Prints the interpreter and the `--backend-python` option to use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poolconform.envs import DEFAULT_ROOT, create_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="build a Python environment for a backend (another framework version)",
                       description="Environments for backends that need their own packages: another release "
                                   "of a framework, a converter's pinned stack.")
    actions = p.add_subparsers(dest="env_command", metavar="ACTION")
    actions.required = True
    create = actions.add_parser(
        "create", help="create environment NAME with poolconform and the given requirements",
        description=f"Create environment NAME under $POOLCONFORM_ENV_DIR (default {DEFAULT_ROOT}), install "
                    "poolconform (editable from this checkout, else this version) and the requirements into it, "
                    "and print the --backend-python option that runs a backend there. Name it after the "
                    "backend, e.g. onnxruntime-cpu@1.23 for `--backends onnxruntime-cpu,onnxruntime-cpu@1.23`.")
    create.add_argument("name", metavar="NAME", help="the environment's name, e.g. onnxruntime-cpu@1.23")
    create.add_argument("packages", nargs="*", metavar="PKG", help="requirements, e.g. onnxruntime==1.23.2 'numpy<2'")
    create.add_argument("--requirements", "-r", type=Path, metavar="FILE", help="a pip requirements file")
    create.add_argument("--python", metavar="PATH", help="base interpreter (default: the one running poolconform)")
    create.add_argument("--dir", type=Path, metavar="DIR", help="folder of environments (default $POOLCONFORM_ENV_DIR)")
    create.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    try:
        python = create_env(args.name, args.packages, args.requirements, args.python, args.dir)
    except KeyboardInterrupt:  # not the run commands' `--resume` advice: there is nothing to resume
        print(f"poolconform env: interrupted; environment {args.name!r} was not created (nothing is left behind)",
              file=sys.stderr)
        return 130
    print(python)
    print(f"--backend-python {args.name}={python}")
    return 0

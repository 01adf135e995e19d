"""Backends in their own Python environments (README "Backends in their own environments").

Converters pin stacks that conflict with the project's (onnx2tf wants its own TensorFlow,
onnx, ORT and numpy 1.x), and a regression check wants two releases of one framework in one
run. So a backend's worker may run under another interpreter: `--backend-python NAME=PATH`
or `[tool.poolconform.backend-python]` in the current directory's pyproject.toml. A name
`NAME@TAG` is backend NAME under the interpreter given for `NAME@TAG`. `poolconform env
create` builds such an environment under `env_root()`, with poolconform itself installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from poolconform.errors import PoolconformError

#: Where `poolconform env create` puts environments unless POOLCONFORM_ENV_DIR says otherwise.
DEFAULT_ROOT = Path("~/.cache/poolconform/envs")
CONFIG_FILE = "pyproject.toml"
CONFIG_TABLE = "backend-python"  # [tool.poolconform.backend-python]
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


def env_root() -> Path:
    """The folder holding the environments: $POOLCONFORM_ENV_DIR, else ~/.cache/poolconform/envs."""
    return Path(os.environ.get("POOLCONFORM_ENV_DIR") or DEFAULT_ROOT).expanduser()


def interpreter_of(env: Path) -> Path:
    """The Python interpreter of a virtual environment."""
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def checked_interpreter(path: str, name: str, origin: str) -> str:
    """`path` as an absolute interpreter path, or a one-line error naming where it came from.

    Not resolved through symlinks: a venv's bin/python is a link, and following it would
    leave the environment for its base interpreter."""
    where = Path(path).expanduser()
    if not where.is_file():
        raise PoolconformError(f"{origin}: interpreter {path!r} for backend {name!r} is not a file")
    if not os.access(where, os.X_OK):
        raise PoolconformError(f"{origin}: interpreter {path!r} for backend {name!r} is not executable")
    return str(where.absolute())


def parse_backend_python(text: str) -> tuple[str, str]:
    """One `--backend-python NAME=PATH` (argparse `type`: a bad one is a one-line usage error)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH (e.g. onnxruntime-cpu@1.23=/envs/ort/bin/python)")
    try:
        return name.strip(), checked_interpreter(path.strip(), name.strip(), "--backend-python")
    except PoolconformError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--backend-python: ")) from None


def configured_pythons(directory: Path | None = None) -> dict[str, str]:
    """`[tool.poolconform.backend-python]` of `directory`'s pyproject.toml (the current one):
    name -> path as written, relative paths taken from that file's folder. {} when absent."""
    from poolconform.tomlfile import read_toml

    config = (directory or Path.cwd()) / CONFIG_FILE
    if not config.is_file():
        return {}
    table = read_toml(config, "config file", PoolconformError).get("tool", {}).get("poolconform", {}).get(CONFIG_TABLE)
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise PoolconformError(f"{config}: [tool.poolconform.{CONFIG_TABLE}] must map backend names to interpreter paths")
    return {name: str(config.parent / Path(path).expanduser()) for name, path in table.items()}


def backend_pythons(cli: Iterable[tuple[str, str]] | None, wanted: Iterable[str],
                    directory: Path | None = None) -> dict[str, str]:
    """Interpreter per backend: the config file's, overridden by --backend-python pairs.
    Only the entries of `wanted` backends are checked, so a config naming an environment this
    machine lacks stops only a run that asks for that backend."""
    chosen = dict(configured_pythons(directory))
    origin = {name: f"{CONFIG_FILE} [tool.poolconform.{CONFIG_TABLE}]" for name in chosen}
    for name, path in cli or ():
        chosen[name], origin[name] = path, "--backend-python"
    wanted = set(wanted)
    return {name: checked_interpreter(path, name, origin[name]) for name, path in chosen.items() if name in wanted}


def poolconform_requirement() -> list[str]:
    """How to install this poolconform into an environment: editable from its source checkout
    (the worker must run the same code as the parent), else the same released version."""
    from poolconform import __version__

    source = Path(__file__).resolve().parent.parent
    pyproject = source / "pyproject.toml"
    if pyproject.is_file() and 'name = "poolconform"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return ["-e", str(source)]
    return [f"poolconform=={__version__}"]


Runner = Callable[[list[str]], int]


def _run(command: list[str]) -> int:
    """Run one build step with its output on stderr (stdout is for the result lines)."""
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, stdout=sys.stderr, check=False).returncode


def create_env(name: str, packages: list[str], requirements: Path | None = None, python: str | None = None,
               root: Path | None = None, use_uv: bool | None = None, run: Runner = _run) -> Path:
    """Build environment `name` under `root` (env_root()) with poolconform and the given
    requirements; returns its interpreter. uv when on PATH (or `use_uv`), else venv + pip.
    A failed build leaves nothing behind, so the same command can simply be run again."""
    if not _SAFE_NAME.fullmatch(name):
        raise PoolconformError(f"environment name {name!r}: use letters, digits and . _ @ + - (e.g. onnxruntime-cpu@1.23)")
    if requirements is not None and not requirements.is_file():
        raise PoolconformError(f"--requirements {str(requirements)!r} is not a file")
    base = checked_interpreter(python, name, "--python") if python else sys.executable
    target = (root or env_root()) / name
    if target.exists():
        raise PoolconformError(f"environment {str(target)!r} already exists; remove it to rebuild it")
    uv = shutil.which("uv") if use_uv is None or use_uv else None
    if use_uv and not uv:
        raise PoolconformError("uv is not on PATH")
    python_path = interpreter_of(target)
    wanted = [*poolconform_requirement(), *packages, *(["-r", str(requirements)] if requirements else [])]
    if uv:
        steps = [[uv, "venv", "--python", base, str(target)], [uv, "pip", "install", "--python", str(python_path), *wanted]]
    else:
        steps = [[base, "-m", "venv", str(target)], [str(python_path), "-m", "pip", "install", *wanted]]
    if os.path.lexists(target.parent) and not target.parent.is_dir():
        raise PoolconformError(f"the environments folder {str(target.parent)!r} exists and is not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PoolconformError(f"cannot create the environments folder {str(target.parent)!r}: "
                               f"{exc.strerror or exc}") from None
    try:
        for step in steps:
            try:
                status = run(step)
            except OSError as exc:  # the build tool itself could not be started
                raise PoolconformError(f"building environment {name!r} failed: cannot run `{step[0]}`: "
                                       f"{exc.strerror or exc}") from None
            if status != 0:
                raise PoolconformError(f"building environment {name!r} failed: `{' '.join(step)}` exited with {status}")
    except BaseException:  # a failed or interrupted build leaves nothing behind
        shutil.rmtree(target, ignore_errors=True)
        raise
    return python_path

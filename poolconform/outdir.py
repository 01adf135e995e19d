"""The --out folder of a run or check: one run at a time, no writes through symlinks, its identity.

Two runs sharing a folder would interleave results.jsonl, so a run holds an exclusive
lock on it for its whole life (the kernel drops it when the process dies, SIGKILL
included); a command that reads a run's folder (merge) holds a shared lock meanwhile, so
it never reads a folder half-written by a `run --resume`. A symlink placed where
poolconform writes could aim a truncation outside the folder, so those names are refused. The run's identity (which cases, which
backends, which poolconform) is stored beside the records, so `--resume` can refuse
to mix two different runs.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from poolconform import __version__
from poolconform.errors import PoolconformError
from poolconform.results import RESULTS_FILE
from poolconform.shard import ids_digest

LOCK_FILE = ".poolconform.lock"
IDENTITY_FILE = "run.json"
LOG_DIR = "logs"
#: Names poolconform writes directly in --out besides the report files (reports are
#: replaced atomically, these are opened in place): none of them may be a symlink.
WRITTEN_NAMES = (LOCK_FILE, IDENTITY_FILE, LOG_DIR, RESULTS_FILE, "summary.json")
#: The reports a run writes besides summary.json (poolconform/report/files.py).
REPORT_FILES = ("findings.json", "report.html", "junit.xml", "summary.md")


def _written_names() -> tuple[str, ...]:
    return WRITTEN_NAMES + REPORT_FILES


def remove_reports(out: Path) -> None:
    """Remove the previous run's reports from --out as a new run starts: if this one is
    killed, no summary.json or report.html may go on saying how the old one ended while
    results.jsonl holds the new one's records."""
    for name in ("summary.json", *REPORT_FILES):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError as exc:
            raise PoolconformError(f"cannot remove the previous run's {str(out / name)!r}: "
                                   f"{exc.strerror or exc}") from None


def prepare(out: Path) -> None:
    """Create --out, or refuse in one line: a file, a path under a file, a symlinked entry."""
    if out.exists() and not out.is_dir():
        raise PoolconformError(f"--out {str(out)!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PoolconformError(f"cannot create --out {str(out)!r}: {exc.strerror or exc}") from None
    for name in _written_names():
        path = out / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise PoolconformError(f"{str(path)!r} is a symlink; poolconform does not write through symlinks "
                                   "(remove it or choose another --out)")
        if name == LOG_DIR and not stat.S_ISDIR(mode):
            raise PoolconformError(f"{str(path)!r} is not a folder")
    _refuse_foreign(out)


def out_folder(text: str) -> Path:
    """argparse type of --out: a path, never an empty one (which would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, not an empty path (which would mean the current one)")
    return Path(text)


def _refuse_foreign(out: Path) -> None:
    """Refuse a folder holding files that poolconform would overwrite but did not write: a
    project folder with its own summary.md or results.jsonl, $HOME, /. A folder is
    poolconform's when it holds a run's run.json or a poolconform summary.json (merge's)."""
    if (out / IDENTITY_FILE).is_file() or _holds_our_summary(out):
        return
    held = []
    for name in (*WRITTEN_NAMES, *REPORT_FILES):
        path = out / name
        if name == LOCK_FILE or not path.exists():
            continue
        if path.is_dir() and not any(path.iterdir()) or path.is_file() and not path.stat().st_size:
            continue  # empty: nothing to lose (a run killed as it started leaves an empty results.jsonl)
        held.append(name)
    if held:
        more = f" (and {', '.join(held[1:])})" if held[1:] else ""
        raise PoolconformError(f"--out {str(out)!r} holds {held[0]!r}{more}, which poolconform did not write "
                               "(there is no run.json or poolconform summary.json beside it); choose a new or "
                               "empty folder, or move those files")


def _holds_our_summary(out: Path) -> bool:
    path = out / "summary.json"
    try:
        if not path.is_file() or path.stat().st_size > 64 << 20:
            return False
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(summary, dict) and isinstance(summary.get("tool"), dict) and summary["tool"].get("name") == "poolconform"


class OutLock:
    """An exclusive flock on --out/.poolconform.lock; a second holder is refused, naming the first."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PoolconformError(f"cannot lock --out {str(out)!r}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PoolconformError(f"--out {str(out)!r} is in use by another poolconform run ({holder}); "
                                       "wait for it to finish or choose another --out") from None
            raise PoolconformError(f"cannot lock --out {str(out)!r}: {exc.strerror or exc}") from None
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        note = f"pid {os.getpid()}: {command}".replace("\n", " ")[:400]
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, note.encode("utf-8", "replace") + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race)
            self._fd = None


@contextmanager
def reading(folder: Path) -> Iterator[None]:
    """A shared lock on a run's folder while its files are read: refused in one line while a
    run holds it (its results.jsonl is still growing), and a run started meanwhile is refused
    in turn. A folder without a lock file, or one that cannot be opened (a read-only copy of
    a CI artifact), was not written here by a live run: it is read as it is."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PoolconformError(f"cannot lock {str(folder)!r}: {exc.strerror or exc}") from None
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            raise PoolconformError(f"{str(folder)!r} is being written by a poolconform run ({holder}); "
                                   "wait for it to finish, then merge") from None
        yield
    finally:
        os.close(fd)


def run_identity(case_ids: Iterable[str], backends: Iterable[str]) -> dict:
    """What makes two runs the same run: their cases, their backends, the poolconform that judged."""
    ids = set(case_ids)
    from poolconform.compare import DIGEST_ALGORITHM  # how this run fingerprints outputs (`diff` reads it)

    return {"cases": len(ids), "matrix_digest": ids_digest(ids), "backends": sorted(set(backends)),
            "poolconform": __version__, "digest_algorithm": DIGEST_ALGORITHM}


def read_identity(out: Path) -> dict | None:
    path = out / IDENTITY_FILE
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PoolconformError(f"{str(path)!r}: unreadable run identity ({exc})") from None
    if not isinstance(value, dict):
        raise PoolconformError(f"{str(path)!r}: not a run identity")
    return value


def identity_difference(stored: dict | None, current: dict) -> str | None:
    """Why `--resume` must refuse to continue `stored` as `current`; None when they are one run."""
    if stored is None:
        return f"it holds records but no {IDENTITY_FILE} (written by another poolconform version?)"
    parts = []
    if stored.get("matrix_digest") != current["matrix_digest"]:
        parts.append(f"other cases ({stored.get('cases')} then, {current['cases']} now)")
    if stored.get("backends") != current["backends"]:
        then = ",".join(map(str, stored.get("backends") or [])) or "none"
        parts.append(f"other backends ({then} then, {','.join(current['backends'])} now)")
    if stored.get("poolconform") != current["poolconform"]:
        parts.append(f"another poolconform ({stored.get('poolconform')} then, {current['poolconform']} now)")
    return "; ".join(parts) or None


def prune_logs(log_dir: Path | None, remove_dir: bool = False) -> None:
    """Drop empty log files (and the folder once empty); `remove_dir` removes it whatever it holds."""
    if log_dir is None or not log_dir.is_dir() or log_dir.is_symlink():
        return
    if remove_dir:
        shutil.rmtree(log_dir, ignore_errors=True)
        return
    for path in log_dir.iterdir():
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()
        except OSError:
            pass
    try:
        log_dir.rmdir()  # only succeeds when nothing was logged
    except OSError:
        pass

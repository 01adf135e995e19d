"""Process isolation: each backend runs in its own spawned worker process.

The parent sends batches of cases; the worker answers one message per case as it
finishes, so the parent knows which case was in flight when a worker dies or hangs.
That case gets a `crash` or `timeout` outcome, the worker is restarted, and the rest
of the batch goes on. Workers live for the whole run, so framework imports and
sessions are paid once per backend, not once per case.

Ctrl-C reaches the whole foreground process group, workers included. Workers ignore
SIGINT from their first instruction (it is blocked while they are spawned); the parent
decides: it sets the run's stop event and kills its workers, and a worker killed that
way yields no outcome at all, so an interruption is never recorded as a crash or timeout.

A worker is a plain subprocess of the backend's interpreter (the current one, or the one
`--backend-python` names: README "Backends in their own environments"), speaking over a
socket pair with multiprocessing's framing; every message is poolconform.wire's encoding,
so arrays cross numpy majors as raw bytes. The environment's site-packages are its own:
the parent's sys.path travels only to a worker of the parent's own interpreter.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolconform import shapes, wire
from poolconform.backends.base import BackendSpec, Unsupported
from poolconform.case import PoolCase
from poolconform import adaptive
from poolconform.contexts import SINGLE, translation_rejects
from poolconform.errors import PoolconformError
from poolconform.inputs import make_inputs

#: Keep each framework to one thread: workers run side by side on few cores, and
#: pooling on small tensors gains nothing from threads. `bench` passes its own env.
QUIET_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "KMP_WARNINGS": "0",
    "PYTHONWARNINGS": "ignore",
}


@dataclass(frozen=True)
class Task:
    key: int
    case: PoolCase
    #: None when the case id determines the inputs: the worker makes them itself.
    inputs: list[np.ndarray] | None


@dataclass
class Outcome:
    key: int
    kind: str  # "outputs", "unsupported", "error", "crash", "timeout"
    outputs: list[np.ndarray] | None = None
    message: str = ""
    note: str | None = None
    seconds: float = 0.0


@dataclass
class BackendInfo:
    name: str
    unavailable: str | None = None
    version: str = ""
    device: str = ""
    restarts: int = 0
    third_party: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    #: The interpreter of the backend's own environment (--backend-python), None for this one.
    python: str | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


#: Longest wait a pipe poll accepts (the selector counts milliseconds in a C int);
#: a longer or infinite `--timeout` means "wait as long as it takes".
_MAX_POLL_SECONDS = 1e6


def _poll_seconds(seconds: float) -> float | None:
    """A wait that Connection.poll accepts: None (forever) for inf or absurdly long ones."""
    return None if not math.isfinite(seconds) or seconds > _MAX_POLL_SECONDS else max(0.0, seconds)


def _exit_when_orphaned(parent_pid: int, interval: float = 0.5) -> None:
    """Exit the worker once its parent is gone (SIGKILLed runs leave no stray workers).

    A worker busy in a hang holds no pipe read that could notice the parent's death,
    so a daemon thread watches the parent pid instead (PR_SET_PDEATHSIG would fire
    when the parent's starting *thread* ends, which here is a short-lived pool thread).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(3)

    threading.Thread(target=watch, name="poolconform-orphan-watch", daemon=True).start()


class Channel:
    """One end of the parent-worker socket: multiprocessing's framing, poolconform.wire's bytes."""

    def __init__(self, fd: int) -> None:
        from multiprocessing.connection import Connection

        self._conn = Connection(fd)

    def send(self, message: Any) -> None:
        self._conn.send_bytes(wire.encode(message))

    def recv(self) -> Any:
        return wire.decode(self._conn.recv_bytes())

    def poll(self, seconds: float | None) -> bool:
        return self._conn.poll(seconds)

    def close(self) -> None:
        self._conn.close()


#: Exit status of a worker whose interpreter cannot import poolconform.
NO_POOLCONFORM = 87

#: What a worker's interpreter runs: the config (JSON) is its one argument. It must run on
#: every supported Python and import nothing of poolconform before sys.path is set.
_BOOTSTRAP = (
    "import json, sys\n"
    "config = json.loads(sys.argv[1])\n"
    "if config.get('sys_path') is not None: sys.path[:] = config['sys_path']\n"
    "try:\n"
    "    from poolconform.worker import child_main\n"
    "except ImportError as exc:\n"
    "    sys.stderr.write(f'poolconform worker: {sys.executable} cannot import poolconform: {exc}\\n')\n"
    f"    sys.exit({NO_POOLCONFORM})\n"
    "child_main(config)\n"
)


def child_main(config: dict[str, Any]) -> None:
    """The worker process's entry point (see `_BOOTSTRAP`)."""
    spec = BackendSpec(config["name"], config["target"], third_party=config["third_party"])
    _serve(spec, Channel(config["fd"]), {}, config["log"], config["parent_pid"])


def _serve(spec: BackendSpec, conn: Channel, env: dict[str, str], log_path: str | None,
           parent_pid: int | None = None) -> None:
    """Worker main loop (runs in the child process)."""
    if parent_pid is not None:
        _exit_when_orphaned(parent_pid)
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while spawning; now ignored
    if log_path:
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        except OSError:
            fd = os.open(os.devnull, os.O_WRONLY)  # a log that cannot be written must not stop the backend
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    try:
        backend = spec.load()
        reason = backend.available()
        version = backend.version() if reason is None else ""
        device = backend.device
    except Exception as exc:  # noqa: BLE001  a broken plug-in is reported, not raised
        failure = str(exc) if isinstance(exc, PoolconformError) else f"cannot load backend: {_first_line(exc)}"
        conn.send(("ready", failure, "", ""))
        return
    conn.send(("ready", reason, version, device))
    if reason is not None:
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        for task in message[1]:
            start = time.perf_counter()
            try:
                why = (onnx_only_reason(task.case, getattr(backend, "contexts", SINGLE)) if not backend.reads_onnx
                       else adaptive.onnx_rejects(task.case))  # no ONNX operator to read
                why = why or backend.supports(task.case)
                if why:
                    conn.send(Outcome(task.key, "unsupported", message=why, seconds=time.perf_counter() - start))
                    continue
                if task.inputs is None:
                    made = time.perf_counter()
                    inputs = make_inputs(task.case)
                    start += time.perf_counter() - made  # `seconds` is the backend's own time
                else:
                    inputs = task.inputs
                outputs = [np.asarray(y) for y in backend.run(task.case, inputs)]
                note = backend.note(task.case)
                conn.send(Outcome(task.key, "outputs", outputs, note=note, seconds=time.perf_counter() - start))
            except Unsupported as exc:
                conn.send(Outcome(task.key, "unsupported", message=str(exc), seconds=time.perf_counter() - start))
            except Exception as exc:  # noqa: BLE001  the framework's own error is the finding
                if log_path:
                    traceback.print_exc()
                conn.send(Outcome(task.key, "error", message=_first_line(exc), seconds=time.perf_counter() - start))


def onnx_only_reason(case: PoolCase, contexts: frozenset[str] | set[str] = SINGLE) -> str | None:
    """Why a backend that does not read the ONNX model itself cannot run the case.

    A stored node outside poolconform's translation, or an older opset's ceil_mode output
    that keeps a window starting in the right padding (frameworks have one ceil rule,
    opset 22's); backends that read the ONNX model run such cases as they are.
    """
    if case.onnx_only:
        return f"unsupported: {case.onnx_only}; only backends that read ONNX run it"
    context = translation_rejects(case, contexts)  # a graph around the node: `contexts` says which it expresses
    if context:
        return context
    if shapes.keeps_an_overhang_window(case):
        return (
            f"unsupported: at opset {case.opset} ceil_mode keeps a window that starts in the right padding "
            f"(output {shapes.output_shape(case)}); the framework's ceil_mode drops it, as opset 22 does"
        )
    return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "worker stopped answering"
    if code < 0:
        try:
            return f"worker died with {signal.Signals(-code).name} ({-code})"
        except ValueError:
            return f"worker died with signal {-code}"
    return f"worker exited with status {code}"


#: Every worker of this process, so an interrupt can kill them all at once.
_LIVE: weakref.WeakSet[BackendWorker] = weakref.WeakSet()


def kill_all_workers(wait: float = 0.0) -> None:
    """SIGKILL every worker process of this process (safe from a signal handler); with
    `wait`, also reap them for up to that many seconds (before an immediate exit)."""
    pids = [pid for worker in list(_LIVE) if (pid := worker.kill_process()) is not None]
    deadline = time.monotonic() + wait
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break  # already reaped by its driver thread
            time.sleep(0.005)


class _Process:
    """The little of a worker process the driver needs, over subprocess.Popen."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        self.popen.kill()

    def join(self, seconds: float) -> None:
        try:
            self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()


class BackendWorker:
    """A restartable worker process for one backend, driven from one parent thread.

    Once `stop` is set (an interrupt, a failed write), the worker starts no process,
    and a process that dies or falls silent ends `run` without an outcome.
    """

    def __init__(
        self,
        spec: BackendSpec,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout: float = 300.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.env = dict(QUIET_SINGLE_THREAD_ENV if env is None else env)
        self.log_path = str(log_path) if log_path else None
        self.start_timeout = start_timeout
        self.info = BackendInfo(spec.name, third_party=spec.third_party, python=spec.python)
        self.stop = stop if stop is not None else threading.Event()
        #: The interpreter the worker runs under: the backend's own environment, or this one.
        self.python = spec.python or sys.executable
        self._process: _Process | None = None  # the worker while one runs
        self._conn: Any = None  # the parent's end of the socket (a Channel)
        #: Seconds the last start took (mostly the framework's import): the price of another worker.
        self.start_seconds: float | None = None
        _LIVE.add(self)

    def kill_process(self) -> int | None:
        """SIGKILL the current process, if any, without waiting (any thread, or a signal handler);
        returns its pid."""
        process = self._process
        if process is None:
            return None
        try:
            process.kill()
            return process.pid
        except (OSError, ValueError, AttributeError):
            return None

    def start(self) -> BackendInfo:
        """Spawn the worker and learn whether its backend is usable here."""
        started = time.perf_counter()
        try:
            return self._start()
        finally:
            self.start_seconds = time.perf_counter() - started

    def _start(self) -> BackendInfo:
        if self.stop.is_set():
            self.info.unavailable = "the run was stopped"
            return self.info
        self._process = None
        if self._conn is not None:
            self._conn.close()  # the last worker's end: it is gone
            self._conn = None
        parent, child = socket.socketpair()
        config = {
            "name": self.spec.name, "target": self.spec.target, "third_party": self.spec.third_party,
            "fd": child.fileno(), "log": self.log_path, "parent_pid": os.getpid(),
            # A worker of this very interpreter sees what the parent sees (as multiprocessing's
            # spawn does); another environment keeps its own site-packages.
            "sys_path": None if self.spec.python else list(sys.path),
        }
        env = {**os.environ, **self.env}
        if self.spec.python:
            for leak in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
                env.pop(leak, None)
            # Tools a framework starts as commands (onnx2tf runs `onnxsim`) come from its own
            # environment first, not from the parent's.
            env["PATH"] = os.pathsep.join([os.path.dirname(self.python), env.get("PATH", "")]).rstrip(os.pathsep)
        # Started with SIGINT blocked (exec keeps the mask): a Ctrl-C during the child's start-up
        # must not kill it with a traceback on the terminal; it ignores SIGINT before unblocking it.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._process = _Process(subprocess.Popen(
                [self.python, "-c", _BOOTSTRAP, json.dumps(config)], stdin=subprocess.DEVNULL,
                pass_fds=(child.fileno(),), env=env, close_fds=True,
            ))
        except OSError as exc:
            self.info.unavailable = f"cannot start {self.python}: {exc.strerror or exc}"
            return self.info
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            child.close()
            if self._process is None:
                parent.close()
        self._conn = Channel(parent.detach())
        if self.stop.is_set():  # stopped while spawning: the stopper may have missed this process
            self.kill_process()
        if not self._conn.poll(_poll_seconds(self.start_timeout)):
            self._kill()
            self.info.unavailable = f"worker did not start within {self.start_timeout:.0f} s"
            return self.info
        try:
            _, reason, version, device = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            if self._process.exitcode == NO_POOLCONFORM:
                self.info.unavailable = (f"{self.python} cannot import poolconform; install it there "
                                         f"(`poolconform env create`: README \"Backends in their own environments\")")
            else:
                self.info.unavailable = f"backend failed to load: {_describe_exit(self._process.exitcode)}"
            return self.info
        self.info.unavailable = reason
        self.info.version = version or self.info.version
        self.info.device = device or self.info.device
        return self.info

    def run(self, tasks: list[Task], timeout: float) -> Iterator[Outcome]:
        """Outcomes for `tasks`, in order; crashes and hangs cost one task each."""
        pending = list(tasks)
        while pending:
            if self.stop.is_set():
                return
            if self._process is None or not self._process.is_alive():
                self.info.restarts += 1
                if self.start().unavailable:
                    if self.stop.is_set():
                        return
                    for task in pending:
                        yield Outcome(task.key, "crash", message=f"worker restart failed: {self.info.unavailable}")
                    return
            try:
                self._conn.send(("batch", pending))
            except OSError:
                pass  # the worker died before reading it; the poll below sees it
            while pending:
                task = pending[0]
                try:
                    ready = self._conn.poll(_poll_seconds(timeout))
                    outcome = self._conn.recv() if ready else None
                except (EOFError, OSError):
                    ready, outcome = True, None
                if outcome is None and self.stop.is_set():
                    self._kill()
                    return  # killed by the run's stop: the case did not finish, and it is no crash
                if outcome is None:
                    if not ready:
                        self._kill()
                        yield Outcome(task.key, "timeout", message=f"no answer within {timeout:g} s; worker restarted")
                    else:
                        process = self._process
                        assert process is not None  # started at the top of this loop
                        process.join(5)
                        yield Outcome(task.key, "crash", message=f"{_describe_exit(process.exitcode)}; worker restarted")
                        self._process = None
                    pending.pop(0)
                    break
                pending.pop(0)
                yield outcome

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._process = None

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(5)
        self._kill()

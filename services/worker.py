"""Where the model runs: in a thread of the server process, or in a separate worker process.

A thread is simplest and shares the loaded model, but a method written in Python holds
the GIL while it computes and starves the gRPC event loop. A worker process (started
with "spawn", so no gRPC state is forked) computes in parallel with request handling;
batches travel to it over a pipe as numpy columns and come back as prediction tables.

The worker process can be watched and replaced: it sends a heartbeat every
``heartbeat_s`` from a thread of its own (silence means it is stopped or stuck holding
the GIL; ``silence_s``), ``kill`` ends it at once (a batch waiting on it then fails with
``WorkerLost``), and ``start`` spawns a new one. It never outlives the server: the
kernel kills it when the server's spawning thread dies (Linux ``PR_SET_PDEATHSIG``),
and its heartbeat thread exits when its parent changes (``os.getppid``) or its pipe
closes. With the worker gone, multiprocessing's resource tracker (whose pipe the worker
held too) sees end-of-file and exits as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import pandas as pd

from nurec.methods.contract import Method
from nurec.methods.registry import MethodSpec, available_methods, build_method, register_method
from nurec.methods.run import reconstruct_batch
from services.batcher import WorkerLost
from services.codec import RUN_LOOP_LIMITS, EventBlock

log = logging.getLogger("nurec.serve.worker")

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that created it dies (Linux)."""


# --- the worker process side -----------------------------------------------------------------

@dataclass
class _WorkerState:
    """The worker process's method: its registry name and options, built once per detector."""

    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    methods: dict[str, Method] = field(default_factory=dict)

    def method_for(self, detector: str) -> Method:
        if detector not in self.methods:
            self.methods[detector] = build_method(self.name, detector, **self.options)
            if self.threads and "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)  # this process only runs the method
        return self.methods[detector]


_STATE = _WorkerState()


def _start_worker(spec: MethodSpec, options: dict[str, Any], threads: int | None, path: list[str],
                  detector: str) -> None:
    """Build the method for the default detector in the worker process (runs once, at its start).

    The method's registry entry travels with it, so a method registered at run time (a
    plugin) is known in the worker too.
    """
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if spec.name not in {s.name for s in available_methods()}:
        register_method(spec.name, spec.target, spec.description)
    _STATE.name, _STATE.options, _STATE.threads = spec.name, dict(options), threads
    _STATE.method_for(detector)


def _reconstruct_in_worker(detector: str, block: EventBlock) -> pd.DataFrame:
    return reconstruct_batch(_STATE.method_for(detector), block.to_awkward(), limits=RUN_LOOP_LIMITS)


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this process when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(0)


def _beat(beats: Connection, parent_pid: int, heartbeat_s: float) -> None:
    """Send heartbeats until the parent is gone (then end the process: nobody needs its work)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        try:
            beats.send_bytes(b".")
        except OSError:  # the server closed its end
            os._exit(0)
        time.sleep(heartbeat_s)


def _worker_main(requests: Connection, beats: Connection, parent_pid: int, heartbeat_s: float,
                 spec: MethodSpec, options: dict[str, Any], threads: int | None, path: list[str],
                 detector: str) -> None:
    """The worker process: build the method, then answer (detector, block) requests until told to stop."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the worker stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_beat, args=(beats, parent_pid, heartbeat_s), name="nurec-heartbeat",
                     daemon=True).start()
    try:
        _start_worker(spec, options, threads, path, detector)
    except BaseException as err:  # the server raises it again (e.g. FileNotFoundError: fall back)
        _send(requests, ("error", err))
        return
    _send(requests, ("ready", os.getpid()))
    while True:
        try:
            message = requests.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        detector, block = message
        try:
            _send(requests, ("ok", _reconstruct_in_worker(detector, block)))
        except Exception as err:
            _send(requests, ("error", err))


def _send(connection: Connection, message: tuple[str, Any]) -> None:
    try:
        connection.send(message)
    except (OSError, EOFError):
        os._exit(0)  # the server is gone
    except Exception as err:  # the result or error does not pickle
        connection.send(("error", RuntimeError(f"worker result could not be sent back: {err!r}")))


# --- the server side -----------------------------------------------------------------------

@contextmanager
def _without_main_module() -> Iterator[None]:
    """Hide ``__main__`` while the worker starts, so "spawn" does not re-run the caller's script.

    The worker needs only importable modules (the registry target), never the script,
    stdin or notebook that started the server.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@dataclass
class _Process:
    """One started worker process and its two pipes."""

    process: Any
    requests: Connection
    beats: Connection
    last_beat: float = field(default_factory=time.monotonic)
    busy: bool = False
    closed: bool = False

    def close_pipes(self) -> None:
        if not self.closed:
            self.closed = True
            self.requests.close()
            self.beats.close()


class ProcessWorker:
    """Runs a registered method in one worker process (built per detector there).

    ``start`` spawns it and waits (at most ``startup_timeout_s``) until its method is
    built; ``kill`` ends it; the server's watchdog calls both to replace a worker that
    died or stopped responding. Spawning happens on a thread of this object that lives
    as long as it, since Linux ties the worker's death signal to the spawning thread.
    """

    def __init__(self, name: str, options: dict[str, Any], threads: int | None, detector: str, *,
                 heartbeat_s: float = 0.1, startup_timeout_s: float = 600.0) -> None:
        specs = {spec.name: spec for spec in available_methods()}
        if name not in specs:
            raise KeyError(f"method: '{name}' is not registered")
        self._args = (specs[name], options, threads, list(sys.path), detector)
        self.heartbeat_s = heartbeat_s
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._current: _Process | None = None
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurec-spawn")
        self._closed = False
        self.start()

    # --- process lifecycle -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Return the worker process id (None while none runs)."""
        current = self._current
        return current.process.pid if current is not None else None

    @property
    def alive(self) -> bool:
        """Return True while a started worker process runs."""
        current = self._current
        return current is not None and current.process.is_alive()

    def start(self) -> None:
        """Spawn a worker process and wait until its method is built (raises what building raised)."""
        self._spawner.submit(self._spawn).result(timeout=self.startup_timeout_s + 30)

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        requests, child_requests = context.Pipe()
        beats, child_beats = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main, name="nurec-worker", daemon=True,
            args=(child_requests, child_beats, os.getpid(), self.heartbeat_s, *self._args))
        with _without_main_module():
            process.start()
        child_requests.close()  # only the worker holds these now: its death is end-of-file here
        child_beats.close()
        started = _Process(process, requests, beats)
        with self._lock:
            if self._closed:  # closed while this one was starting
                _end(process)
                started.close_pipes()
                raise WorkerLost("the server is stopping")
            self._current = started
        try:
            if not requests.poll(self.startup_timeout_s):
                raise TimeoutError(f"worker: the method was not built within {self.startup_timeout_s:g} s")
            status, value = requests.recv()
        except (EOFError, OSError):
            self._discard(started)
            raise RuntimeError(f"worker: the process exited while starting (exit code {process.exitcode})") from None
        except BaseException:
            self._discard(started)
            raise
        if status != "ready":
            self._discard(started)
            raise value
        started.last_beat = time.monotonic()
        log.info("worker started", extra={"worker_pid": process.pid})

    def _discard(self, started: _Process) -> None:
        with self._lock:
            if self._current is started:
                self._current = None
        _end(started.process)
        started.close_pipes()

    def silence_s(self) -> float:
        """Return the seconds since the worker's last heartbeat (0.0 while none is started)."""
        current = self._current
        if current is None or current.closed:
            return 0.0
        with contextlib.suppress(OSError, EOFError):
            while current.beats.poll(0):
                current.beats.recv_bytes()
                current.last_beat = time.monotonic()
        return time.monotonic() - current.last_beat

    def kill(self) -> None:
        """End the worker process now (a waiting batch fails with WorkerLost); ``start`` makes a new one."""
        with self._lock:
            current, self._current = self._current, None
            if current is None:
                return
            busy = current.busy
        _end(current.process)
        if not busy:  # else the waiting batch sees end-of-file and closes them
            current.close_pipes()

    def close(self) -> None:
        """Stop the worker process (ask, then kill) and the spawning thread."""
        with self._lock:
            self._closed = True
            current, self._current = self._current, None
        if current is not None:
            if not current.busy:
                with contextlib.suppress(OSError, EOFError, ValueError):
                    current.requests.send(None)
                current.process.join(2.0)
            _end(current.process)
            if not current.busy:
                current.close_pipes()
        self._spawner.shutdown(wait=False, cancel_futures=True)

    # --- work ----------------------------------------------------------------------------

    def reconstruct_block(self, detector: str, block: EventBlock) -> pd.DataFrame:
        """Return the method's predictions for the events of ``block`` of ``detector`` (computed in the worker).

        Raises WorkerLost when no worker runs or it dies (or is killed) before answering.
        """
        with self._lock:
            current = self._current
            if current is None:
                raise WorkerLost("the model worker is restarting")
            current.busy = True
        try:
            current.requests.send((detector, block))
            while not current.requests.poll(1.0):
                if not current.process.is_alive():
                    break
            status, value = current.requests.recv()
        except (EOFError, OSError):
            code = current.process.exitcode
            raise WorkerLost(f"the model worker (pid {current.process.pid}) exited "
                             f"(exit code {code}) before answering") from None
        finally:
            with self._lock:
                current.busy = False
                orphaned = self._current is not current
            if orphaned:
                current.close_pipes()
        if status != "ok":
            raise value
        return value


def _end(process: Any) -> None:
    """Kill ``process`` if it runs and reap it (bounded wait)."""
    if process.is_alive():
        with contextlib.suppress(OSError):
            process.kill()
    process.join(5.0)


# --- a thread executor that never blocks interpreter exit -----------------------------------

class DaemonThreadExecutor(Executor):
    """Runs submitted calls one at a time on one daemon thread.

    Unlike ThreadPoolExecutor, a call that never returns (a hung model in thread mode)
    neither blocks interpreter exit nor ``shutdown``: the server abandons the thread
    and carries on with a new executor.
    """

    def __init__(self, name: str = "nurec-infer") -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._shutdown = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:
                future.set_exception(err)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while (item := self._calls.get_nowait()) is not None:
                    item[0].cancel()
        self._calls.put(None)
        if wait:
            self._thread.join()

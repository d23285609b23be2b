"""Keeping the user's code inside the check: a time limit, and exits and interrupts reported, not obeyed.

``gdlab check`` runs code that gdlab did not write, and code can do more
than raise an exception: loop forever, call ``sys.exit(3)``, raise
``KeyboardInterrupt`` to get out of two loops at once. `run_contained` runs
the check (importing the user's file, running its code) so that
each of these becomes a `CannotCheck` naming the user's line, while a real
Ctrl-C still stops gdlab at once.

How the time limit stops code, and why:

- In the main thread where the platform has ``SIGALRM`` (Linux, macOS: the
  command line, scripts, notebooks, whose cells run in the kernel's main
  thread), a real-time timer (``signal.setitimer``) raises `TimeLimitReached`
  in whatever Python line is running. It costs nothing until it fires and
  also interrupts a ``time.sleep`` or a blocking read. A subprocess would
  isolate more (``os._exit``, a crash in C) but would cost a second start-up
  of Python and torch for every check, and a function defined in a notebook
  cell would have to be pickled to reach it.
- Elsewhere (another thread, Windows, a timer already in use, say by
  pytest-timeout), a watchdog thread raises the same exception in the
  checking thread with ``PyThreadState_SetAsyncExc``; it takes effect at the
  next Python line, so code blocked inside one long C call is stopped when
  that call returns. (Off the main thread of a Python other than CPython
  there is neither, and the limit is not enforced.)

Only the user's code is timed (`Containment.running` around importing it and
around each run), so gdlab's own work, loading the check's digits say, never
counts against it; the limit is one budget for all of the check's runs.

After the first, the exception is raised again every `REPEAT_SECONDS`, so
code that swallows it (a bare ``except:`` inside its loop) is stopped too.

Telling a real Ctrl-C from the user's ``raise KeyboardInterrupt``: while the
check runs, a SIGINT handler marks that a real interrupt arrived before
passing it on. A marked interrupt stops gdlab (``KeyboardInterrupt``, exit
130 on the command line) even if the user's code catches it and returns, as
training loops written to be stopped early with Ctrl-C do; an unmarked one
was raised by the user's code and is reported. Off the main thread there is
no handler to install, and none is needed: a real Ctrl-C is delivered to the
main thread, never to the one running the check.

Out of reach of any of this, and so not promised: ``os._exit``, a crash
inside C code, threads or processes the user's code starts.
"""

from __future__ import annotations

import ctypes
import math
import signal
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import TypeVar

from gdlab.check.loading import CannotCheck, describe_frame
from gdlab.errors import GdlabError

DEFAULT_TIMEOUT = 120.0
# How often the stop is raised again in code that swallowed it.
REPEAT_SECONDS = 0.5

T = TypeVar("T")


class TimeLimitReached(BaseException):
    """Raised in the user's code when the check's time is up.

    A BaseException, like KeyboardInterrupt, so that an ``except Exception``
    in the user's code cannot swallow it and loop on.
    """


def validate_timeout(seconds: object) -> float | None:
    """``seconds`` as a float, or None for no limit; anything else is a `GdlabError` naming the value."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, Real) or not math.isfinite(seconds) or seconds <= 0:
        raise GdlabError(
            f"timeout must be a number of seconds > 0 (or None for no limit), got {seconds!r}; "
            f"the default is {DEFAULT_TIMEOUT:g}"
        )
    return float(seconds)


class Containment:
    """One contained check: the time its user's code has left, what runs now (for the messages),
    whether a real Ctrl-C arrived, and the stopper and SIGINT handler installed until `stop`."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.used = 0.0
        self.doing = "running your code"
        self.interrupted = False
        self.stopper: _Alarm | _Watchdog | None = None
        self.previous_interrupt = None

    def running(self, doing: str) -> _Section:
        """``with containment.running("running train_manual"): ...`` around every call into the user's code:
        the time in these blocks is what ``seconds`` bounds, and ``doing`` is what the messages name."""
        return _Section(self, doing)

    def stop_with(self) -> type[BaseException]:
        return KeyboardInterrupt if self.interrupted else TimeLimitReached

    def start(self) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        if in_main and _Alarm.available():
            self.stopper = _Alarm(self)
        elif self.seconds is not None and _Watchdog.available():
            self.stopper = _Watchdog(self)
        previous = signal.getsignal(signal.SIGINT) if in_main else None
        # SIG_IGN: a Ctrl-C cannot arrive; SIG_DFL: it ends the process; either way nothing to tell apart.
        if callable(previous):
            self.previous_interrupt = previous
            signal.signal(signal.SIGINT, self._on_interrupt)
        if self.stopper is not None:
            self.stopper.start()

    def _on_interrupt(self, number, frame):
        self.interrupted = True
        if self.stopper is not None:
            self.stopper.arm(0.05)  # and again and again, should the user's code catch this one and go on
        return self.previous_interrupt(number, frame)

    def stop(self) -> None:
        """Disarm and put the handlers back; safe to call again (a late signal may cut the first call short)."""
        try:
            if self.stopper is not None:
                self.stopper.stop()
        finally:
            if self.previous_interrupt is not None:
                signal.signal(signal.SIGINT, self.previous_interrupt)
                self.previous_interrupt = None


class _Section:
    """A block of the user's code: armed with the time the check has left, its duration added up."""

    def __init__(self, guard: Containment, doing: str):
        self.guard = guard
        self.doing = doing

    def __enter__(self) -> None:
        guard = self.guard
        guard.doing = self.doing
        self.started = time.monotonic()
        if guard.seconds is not None and guard.stopper is not None:
            left = guard.seconds - guard.used
            if left <= 0:
                raise TimeLimitReached
            guard.stopper.arm(left)

    def __exit__(self, *exc) -> bool:
        guard = self.guard
        if guard.stopper is not None and not guard.interrupted:
            guard.stopper.disarm()
        guard.used += time.monotonic() - self.started
        return False


def run_contained(seconds: float | None, work: Callable[[Containment], T]) -> T:
    """``work(containment)``, whose calls into the user's code (`Containment.running`) may take
    ``seconds`` in all (None: no limit); what that code did to escape (time up, ``SystemExit``, its own
    ``KeyboardInterrupt``) leaves as a `CannotCheck`.

    A real Ctrl-C leaves as ``KeyboardInterrupt``, also when the user's code caught it and returned.
    A stop raised late, as the user's code returns, lands in this module's frames (the alarm does not
    raise there) or is caught here with the rest.
    """
    guard = Containment(validate_timeout(seconds))
    try:
        try:
            guard.start()
            result = work(guard)
        finally:
            guard.stop()
        if guard.interrupted:
            raise KeyboardInterrupt
        return result
    except TimeLimitReached as stop:
        guard.stop()
        if guard.interrupted:
            raise KeyboardInterrupt from None
        raise CannotCheck(_timed_out(guard, stop)) from None
    except KeyboardInterrupt as interrupt:
        guard.stop()
        if guard.interrupted:
            raise
        raise CannotCheck(_escaped(guard, interrupt)) from None
    except SystemExit as exit_:
        guard.stop()
        if guard.interrupted:
            raise KeyboardInterrupt from None
        raise CannotCheck(_escaped(guard, exit_)) from None


class _Alarm:
    """The main thread's real-time timer: SIGALRM raises the stop in whatever line runs."""

    def __init__(self, guard: Containment):
        self.guard = guard
        self.previous = None

    @staticmethod
    def available() -> bool:
        # Someone else's running timer (pytest-timeout's, say) is left alone: the watchdog serves instead.
        return hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    def start(self) -> None:
        self.previous = signal.signal(signal.SIGALRM, self._fire)

    def arm(self, seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_SECONDS)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, number, frame):
        # Never inside this module: that is a section or the check ending, or `stop` disarming.
        if frame is not None and frame.f_code.co_filename == __file__:
            return
        raise self.guard.stop_with()

    def stop(self) -> None:
        if self.previous is None:
            return
        try:
            self.disarm()
        finally:
            signal.signal(signal.SIGALRM, self.previous)
            self.previous = None


class _Watchdog:
    """A thread that raises the stop in the checking thread when the time is up (CPython's async exception)."""

    def __init__(self, guard: Containment):
        self.guard = guard
        self.target = threading.get_ident()
        self.changed = threading.Condition()
        self.deadline: float | None = None
        self.active = False
        self.thread = threading.Thread(target=self._watch, name="gdlab-check-timeout", daemon=True)

    @staticmethod
    def available() -> bool:
        return hasattr(ctypes, "pythonapi") and hasattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc")

    def start(self) -> None:
        self.active = True
        self.thread.start()

    def arm(self, seconds: float) -> None:
        with self.changed:
            self.deadline = time.monotonic() + seconds
            self.changed.notify()

    def disarm(self) -> None:
        with self.changed:
            self.deadline = None
            # One raised but not yet delivered would land in gdlab's code: withdraw it.
            self._raise_in_target(None)

    def _raise_in_target(self, exception: type[BaseException] | None) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self.target), ctypes.py_object(exception) if exception is not None else None
        )

    def _watch(self) -> None:
        with self.changed:
            while self.active:
                if self.deadline is None:
                    self.changed.wait()
                    continue
                left = self.deadline - time.monotonic()
                if left > 0:
                    self.changed.wait(left)
                    continue
                self._raise_in_target(self.guard.stop_with())
                self.deadline = time.monotonic() + REPEAT_SECONDS

    def stop(self) -> None:
        with self.changed:
            if not self.active:
                return
            self.active = False
            self.deadline = None
            self._raise_in_target(None)
            self.changed.notify()
        self.thread.join()


# --- the messages ----------------------------------------------------------------------------------


def _timed_out(guard: Containment, stop: TimeLimitReached) -> str:
    if guard.doing.startswith("importing"):
        why = (
            "everything at the top level of the file runs when gdlab imports it: put training, downloads and "
            "waiting under `if __name__ == \"__main__\":`, and look for a loop that never ends"
        )
    else:
        why = (
            "the check runs a few steps on a tiny MLP, well under a second for code whose loops end: "
            "look for a loop that never ends"
        )
    return (
        f"your code did not return within {guard.seconds:g} s while gdlab was {guard.doing}, so it cannot be "
        f"checked{_place(stop, 'stopped at')}\n  {why}. If it is only slow, give it longer: --timeout SECONDS "
        "(Python: timeout=SECONDS)"
    )


def _escaped(guard: Containment, error: BaseException) -> str:
    if isinstance(error, SystemExit):
        what = f"SystemExit({error.code!r})"
        why = (
            "sys.exit(), exit() and quit() end the whole program, and gdlab needs your code to return: "
            "raise an exception instead (an assert, a ValueError)"
        )
    else:
        what = "KeyboardInterrupt itself (no Ctrl-C was pressed)"
        why = (
            "KeyboardInterrupt stops a program as Ctrl-C does; to stop early, return or break, and to "
            "report a problem, raise an ordinary exception (a ValueError, a RuntimeError)"
        )
    if guard.doing.startswith("importing"):
        why += "; code at the top level of the file runs on import: put it under `if __name__ == \"__main__\":`"
    return f"your code raised {what} while gdlab was {guard.doing}, so it cannot be checked{_place(error, 'at')}\n  {why}"


def _place(error: BaseException, label: str) -> str:
    where = user_frame(error)
    return f"\n  {label}{describe_frame(where)}" if where is not None else ""


def _library_folders() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    folders = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return (Path(__file__).resolve().parents[1], *folders)


def _is_library(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    path = Path(filename)
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in _library_folders())


def user_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost line of the user's own code in ``error``'s traceback: not gdlab's, Python's or an
    installed package's (a helper in a neighbouring file of theirs counts as theirs), and with its
    source known (generated code, ``<string>``, has none); None if none."""
    frames = traceback.extract_tb(error.__traceback__)
    return next((frame for frame in reversed(frames) if frame.line and not _is_library(frame.filename)), None)

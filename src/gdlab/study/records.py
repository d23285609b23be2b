"""The study folder on disk: one record per finished run, written so a crash never leaves half of one.

Layout of ``--out DIR``::

    study.toml            the study file as it was run
    identity.json         what the study was made from: every resolved setting, the grid, the seeds,
                          the user's rule file by SHA-256, gdlab's version
    study.lock            present while a gdlab run writes the folder: its pid and host
    runs/<id>.json        a finished run: config, seed, status, final figures, per-epoch history
    metrics/<id>.csv      every iteration of that run: iteration, epoch, loss, accuracy
    models/<id>.pt        its final parameters (the test set is evaluated from these, for the selected runs only)
    summary.json          the study's result (written last)

Each file is written to a temporary name and renamed into place, and the run's
JSON goes last, after its CSV and model: a run counts as finished only when
its JSON exists, parses, matches the plan, and its CSV and model are whole.
"""

import contextlib
import csv
import datetime
import errno
import io
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from gdlab.errors import GdlabError
from gdlab.study.execute import RunOutcome
from gdlab.study.search import Configuration, RunPlan
from gdlab.study.spec import Study
from gdlab.train import History

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to the holder's pid
    fcntl = None

RECORD_VERSION = 1
LOCK_NAME = "study.lock"
# The folders write_atomically writes into (the report too), where a killed write can leave a temporary file.
WRITTEN_FOLDERS = (".", "runs", "metrics", "models", "plots")


def _new_file_mode() -> int:
    """The mode open() gives a new file here (0o666 less the umask); mkstemp's own is 0o600."""
    try:  # Linux: read without setting it, so no other thread ever sees a wrong umask
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole or keeps what it held: a crash never leaves part of it.
    An OSError names ``path`` (not the temporary file), and leaves no temporary file behind."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), _new_file_mode())
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def json_safe(value):
    """NaN and infinities become null: JSON has no such numbers, and strict readers refuse them."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    write_atomically(path, (json.dumps(json_safe(payload), indent=2) + "\n").encode())


def run_record(outcome: RunOutcome) -> dict:
    """The summary.json entry of a run (contract fields first)."""
    plan, history = outcome.plan, outcome.history
    train, val = outcome.train_metrics or {}, outcome.val_metrics or {}
    record = {
        "id": plan.id,
        "config": plan.config(),
        "seed": plan.seed,
        "status": history.status,
        "train_accuracy": train.get("accuracy"),
        "val_accuracy": val.get("accuracy"),
        "val_loss": val.get("loss"),
        "seconds": history.seconds,
        "config_id": plan.configuration.id,
        "implementation": plan.implementation,
        "train_loss": train.get("loss"),
        "epochs_completed": history.epochs_completed,
        "iterations": len(history.iteration_loss),
        "diverged_at_iteration": history.diverged_at_iteration,
    }
    if outcome.max_loss_difference is not None:
        record["max_loss_difference"] = outcome.max_loss_difference
    return record


def study_identity(study: Study) -> dict:
    """What makes a study: everything a run's identity holds, for the base settings, with each grid
    axis as its list of values, plus the name, the seeds, the search and the ablation factors."""
    base = study.base
    identity = RunPlan("base", Configuration(0, "base", {}, base), 0, base.optimizer.implementation).identity()
    del identity["seed"], identity["implementation"]
    identity["optimizer.implementation"] = base.optimizer.implementation
    identity.update(study.axes)
    identity.update({"name": study.name, "seeds": study.seeds, "ablation.factors": study.ablation.factors})
    identity.update({f"search.{key}": value for key, value in study.search.model_dump().items()})
    return json_safe(identity)


# Settings that joined the identity after folders were written with it, with the value every run
# had before: a saved identity without one was made with it, and resumes as the same study.
ADDED_SETTINGS = {"train.engine": "autograd", "train.precision": "full", "train.memory_format": "contiguous"}


def differences(saved: dict, now: dict) -> list[str]:
    """``"key: saved -> now"`` for each key whose value differs (a setting added since ``saved`` was
    written counts as its value then, ``ADDED_SETTINGS``)."""
    saved = {**{key: value for key, value in ADDED_SETTINGS.items() if key in now}, **saved}
    saved, now = json_safe(saved), json_safe(now)
    return [
        f"{key}: {saved.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(saved) | set(now))
        if json.dumps(saved.get(key), sort_keys=True) != json.dumps(now.get(key), sort_keys=True)
    ]


class UntrustedRun(Exception):
    """A run left files that cannot be trusted as finished; the message says why, in a few words."""


def _why(error: Exception) -> str:
    """An exception as a short single line, for saying why a saved file is not trusted."""
    text = " ".join(str(error).split())
    text = text if len(text) <= 100 else text[:97] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class FolderInUse(GdlabError):
    """Another gdlab run holds the study folder's lock."""


class StudyFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_json(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def metrics_csv(self, run_id: str) -> Path:
        return self.root / "metrics" / f"{run_id}.csv"

    def model_file(self, run_id: str) -> Path:
        return self.root / "models" / f"{run_id}.pt"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def spec_file(self) -> Path:
        return self.root / "study.toml"

    @property
    def identity_json(self) -> Path:
        return self.root / "identity.json"

    def holds_study(self) -> bool:
        return (
            (self.root / "runs").is_dir()
            or self.summary_json.exists()
            or self.identity_json.exists()
            or self.spec_file.exists()
        )

    def save_spec(self, text: str | bytes) -> None:
        write_atomically(self.spec_file, text.encode() if isinstance(text, str) else text)

    def save_identity(self, study: Study) -> None:
        write_json(self.identity_json, {"identity": study_identity(study), "version": RECORD_VERSION})

    def changed_study(self, study: Study) -> list[str]:
        """How the study saved here differs from ``study`` ("key: saved -> now"); empty when the
        folder records no study identity (made by an older gdlab) or the same one."""
        try:
            saved = json.loads(self.identity_json.read_bytes())["identity"]
        except FileNotFoundError:
            return []
        except Exception as error:  # unreadable: never trusted to match
            return [f"identity.json unreadable ({_why(error)})"]
        return differences(saved, study_identity(study))

    def saved_run_ids(self) -> list[str]:
        runs = self.root / "runs"
        return sorted(path.stem for path in runs.glob("*.json")) if runs.is_dir() else []

    def remove_run(self, run_id: str) -> None:
        for path in (self.run_json(run_id), self.metrics_csv(run_id), self.model_file(run_id)):
            path.unlink(missing_ok=True)

    def remove_stray_temporaries(self) -> int:
        """Delete the temporary files a killed write left (``.NAME.*.tmp``); how many there were.
        Only safe while holding the folder's lock: nobody else is writing."""
        removed = 0
        for folder in WRITTEN_FOLDERS:
            for path in (self.root / folder).glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def save_run(self, outcome: RunOutcome) -> dict:
        run_id = outcome.plan.id
        history = outcome.history
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["iteration", "epoch", "loss", "accuracy"])
        rows = zip(history.iteration_epochs(), history.iteration_loss, history.iteration_accuracy)
        for iteration, (epoch, loss, accuracy) in enumerate(rows):
            writer.writerow([iteration, epoch, repr(loss), repr(accuracy)])
        write_atomically(self.metrics_csv(run_id), table.getvalue().encode())
        buffer = io.BytesIO()
        torch.save(outcome.state_dict, buffer)
        write_atomically(self.model_file(run_id), buffer.getvalue())
        record = run_record(outcome)
        history_fields = history.to_dict()
        del history_fields["iteration_loss"], history_fields["iteration_accuracy"]
        write_json(
            self.run_json(run_id),
            {"record": record, "history": history_fields, "identity": outcome.plan.identity(),
             "complete": True, "version": RECORD_VERSION},
        )
        return record

    def changed_settings(self, plan: RunPlan) -> list[str]:
        """How a saved run under ``plan``'s id was made differently from ``plan`` ("key: saved -> now"),
        empty when there is no readable saved run or it was made the same way."""
        try:
            saved = json.loads(self.run_json(plan.id).read_bytes())["identity"]
            return differences(saved, plan.identity())
        except Exception:  # unreadable: verify_run says why when the run is redone
            return []

    def verify_run(
        self, plan: RunPlan, parameter_shapes: Callable[[RunPlan], dict[str, tuple]] | None = None
    ) -> tuple[dict, History] | None:
        """The saved record and history of ``plan``, each of its files checked; None when the run left
        nothing on disk. Raises UntrustedRun, saying why, when its files are partial, unreadable, of
        other settings, or hold parameters of another model than ``parameter_shapes(plan)`` names."""
        run_json = self.run_json(plan.id)
        if not run_json.exists():
            leftovers = [path for path in (self.metrics_csv(plan.id), self.model_file(plan.id)) if path.exists()]
            if leftovers:
                raise UntrustedRun(f"runs/{run_json.name} missing (stopped while saving)")
            return None
        try:
            payload = json.loads(run_json.read_bytes())
            record = payload["record"]
            if not (payload.get("complete") is True and payload.get("version") == RECORD_VERSION):
                raise UntrustedRun(f"runs/{run_json.name} is not a complete record of this gdlab's format")
        except UntrustedRun:
            raise
        except Exception as error:
            raise UntrustedRun(f"runs/{run_json.name} unreadable ({_why(error)})") from None
        saved_identity = payload.get("identity") if isinstance(payload.get("identity"), dict) else {}
        changed = [line.partition(":")[0] for line in differences(saved_identity, plan.identity())]
        if changed:
            raise UntrustedRun(f"settings changed ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''})")
        try:
            same_config = json.dumps(json_safe(record["config"]), sort_keys=True) == json.dumps(
                json_safe(plan.config()), sort_keys=True
            )
            if record["id"] != plan.id or record["seed"] != plan.seed or not same_config:
                raise UntrustedRun(f"runs/{run_json.name} records another run")
            if record["status"] not in ("ok", "diverged"):
                raise UntrustedRun(f"runs/{run_json.name} has status {record['status']!r}")
        except UntrustedRun:
            raise
        except Exception as error:
            raise UntrustedRun(f"runs/{run_json.name} unreadable ({_why(error)})") from None
        iterations = self._verified_iterations(plan.id, record)
        self._verify_model(plan, parameter_shapes)
        try:
            history = History.from_dict(
                {**payload["history"], "iteration_loss": iterations[0], "iteration_accuracy": iterations[1]}
            )
        except Exception as error:
            raise UntrustedRun(f"runs/{run_json.name} has an unreadable history ({_why(error)})") from None
        return record, history

    def load_finished(self, plan: RunPlan) -> tuple[dict, History] | None:
        """The saved record and history of ``plan``, or None if it is missing, partial or does not match."""
        try:
            return self.verify_run(plan)
        except UntrustedRun:
            return None

    def _verified_iterations(self, run_id: str, record: dict) -> tuple[list[float], list[float]]:
        name = f"metrics/{self.metrics_csv(run_id).name}"
        try:
            with open(self.metrics_csv(run_id), newline="", encoding="utf-8") as file:
                rows = list(csv.reader(file))
            if not rows or rows[0] != ["iteration", "epoch", "loss", "accuracy"]:
                raise UntrustedRun(f"{name} has no header")
            losses, accuracies = [], []
            for expected, row in enumerate(rows[1:]):
                if len(row) != 4 or int(row[0]) != expected:
                    raise UntrustedRun(f"{name} is broken at iteration {expected}")
                losses.append(float(row[2]))
                accuracies.append(float(row[3]))
        except UntrustedRun:
            raise
        except FileNotFoundError:
            raise UntrustedRun(f"{name} missing") from None
        except Exception as error:
            raise UntrustedRun(f"{name} unreadable ({_why(error)})") from None
        if len(losses) != record.get("iterations"):
            raise UntrustedRun(f"{name} holds {len(losses)} iterations, the record says {record.get('iterations')}")
        return losses, accuracies

    def _verify_model(self, plan: RunPlan, parameter_shapes: Callable[[RunPlan], dict[str, tuple]] | None) -> None:
        name = f"models/{self.model_file(plan.id).name}"
        try:
            state = torch.load(self.model_file(plan.id), weights_only=True)
        except FileNotFoundError:
            raise UntrustedRun(f"{name} missing") from None
        except Exception as error:  # garbage bytes fail in many ways: UnpicklingError, IndexError, RuntimeError...
            raise UntrustedRun(f"{name} unreadable ({_why(error)})") from None
        if not (isinstance(state, dict) and all(isinstance(value, torch.Tensor) for value in state.values())):
            raise UntrustedRun(f"{name} does not hold a model's parameters")
        if parameter_shapes is not None:
            shapes = {key: tuple(value.shape) for key, value in state.items()}
            if shapes != parameter_shapes(plan):
                raise UntrustedRun(f"{name} holds parameters of another model")

    def load_state_dict(self, run_id: str) -> dict:
        return torch.load(self.model_file(run_id), weights_only=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[dict | None]:
        """Hold the folder for this process: one gdlab run writes a study folder at a time.

        Yields the holder a stale lock named (a process killed before it could release it,
        whose lock this one took over), or None. Raises FolderInUse naming the live holder.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        descriptor, stale = _acquire(self.root / LOCK_NAME)
        try:
            yield stale
        finally:
            _release(self.root / LOCK_NAME, descriptor)


# The lock is an flock on study.lock, which holds the holder's pid and host for messages:
# the kernel releases an flock when its process dies, even by kill -9, so a lock file
# left behind is free to take, with no pid-reuse guesswork and no race between two
# processes taking over the same stale lock.


def _holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _read_holder(descriptor: int) -> dict | None:
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        holder = json.loads(os.read(descriptor, 4096))
        return holder if isinstance(holder, dict) and "pid" in holder else None
    except (OSError, ValueError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the process a lock file names may still run (another host's: assumed so)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True
    return True


def _locked(descriptor: int, holder: dict | None) -> bool:
    """Take the flock; False when another process holds it. Where the file system has no locks,
    judge by the pid the file names (best effort: two starts at the same instant may both win)."""
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                raise
    return holder is None or not _alive(holder)


def _acquire(path: Path) -> tuple[int, dict | None]:
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            holder = _read_holder(descriptor)
            if not _locked(descriptor, holder):
                raise FolderInUse(_in_use_message(path, holder))
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != os.fstat(descriptor).st_ino:
                # The holder released (removed) the file between our open and our lock: lock the new one.
                os.close(descriptor)
                continue
            mine = json.dumps(_holder()).encode()
            os.ftruncate(descriptor, 0)
            os.lseek(descriptor, 0, os.SEEK_SET)
            os.write(descriptor, mine)
            return descriptor, holder
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            raise


def _release(path: Path, descriptor: int) -> None:
    try:
        # Remove the file only while it is still ours (someone may have deleted it by hand since).
        if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _in_use_message(path: Path, holder: dict | None) -> str:
    folder = path.parent
    if holder is None:
        who = "another gdlab run (it has not written its pid yet)"
    else:
        who = f"another gdlab run (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')})"
    message = (
        f"{folder} is in use by {who}: one run writes a study folder at a time. Wait for it to finish "
        f"or stop it, then continue with --resume; or choose another --out"
    )
    if holder is not None and holder.get("host") != socket.gethostname():
        message += f". If no gdlab runs on {holder.get('host')} any more, delete {path}"
    return message

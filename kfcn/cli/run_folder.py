"""The run folder of `kfcn train`: whether a command starts, resumes or extends the run there, or only
gives a finished run's model new batch-norm statistics (refusing what would mix two runs), and the files
that `--overwrite` moves aside or that a statistics step keeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from kfcn.cli.train_options import OBSERVING, OPTIONS, PATH_OPTIONS

# What `prepare_run_dir` finds a run folder asks for: a new run, the rest of an interrupted or extended one,
# or new batch-norm statistics for a finished run's model.keras.
START, RESUME, RECOMPUTE_STATISTICS = "start", "resume", "recompute statistics"
RUN_FILES = ("model.keras", "training.csv", "curves.png", "config.json", "summary.json")
# What --overwrite moves aside: the run's files, its card and its models kept before new statistics (all the old run's).
REPLACED_RUN_FILES = (*RUN_FILES, "MODEL_CARD.md", "backup", "model-epoch-*-before-statistics.keras")


def prepare_run_dir(config):
    """Checks the run folder: returns `(run_dir, what)`, deleting nothing; `what` is START, RESUME or
    RECOMPUTE_STATISTICS.

    Rerunning the command of an interrupted run resumes it; the same command with a larger
    `--epochs`, on a finished or an interrupted run, extends it (`config.json` records
    each extension under "extended"). The OBSERVING options (`--val-every`, `--precise-bn`,
    `--final-precise-bn`) may change on either, recorded under "observation_changes". A finished run given a new
    `--final-precise-bn N` (or, without one, a new `--precise-bn N`; N > 0) and nothing else new recomputes
    its model.keras's batch-norm statistics over those N batches (RECOMPUTE_STATISTICS), as the last epoch
    would have with `--precise-bn N`; so does its own command where that step was stopped. A finished
    run with the same settings, or a run with other settings, is refused unless `--overwrite`; its files
    are replaced only by `replace_old_run`, after every input has been checked. A folder whose run never
    completed an epoch (no log, no backup) starts afresh with any settings. Run files that
    are symbolic links are refused: writing through them would overwrite files outside the
    run folder.
    """
    from kfcn.atomic import check_writable

    run_dir = check_writable(Path(config["output"]), "--output folder")
    links = [name for name in (*RUN_FILES, "backup") if (run_dir / name).is_symlink()]
    if links:
        raise ValueError(
            f"{run_dir} holds symbolic links ({', '.join(links)}); a run writes its own files there and would "
            "overwrite what they point to. Remove the links or choose another --output."
        )
    saved = run_dir / "config.json"
    started = (run_dir / "training.csv").is_file() or (run_dir / "backup").exists()
    if config["overwrite"]:
        return run_dir, START
    if saved.is_file() and started:
        before = json.loads(saved.read_text())
        # An option added to kfcn after the run started counts as its default.
        before_options = {k: before.get(k, spec[0]) for k, spec in OPTIONS.items() if k != "overwrite"}
        changed = sorted(k for k in before_options if not _same_setting(k, before_options[k], config[k]))
        observing = [k for k in changed if k in OBSERVING]
        changed = [k for k in changed if k not in OBSERVING]
        finished = (run_dir / "summary.json").is_file()
        if changed == ["epochs"] and config["epochs"] > before["epochs"]:
            if not (run_dir / "backup").is_dir():
                raise ValueError(
                    f"{run_dir} holds a finished run without its last state (backup/), which runs of kfcn before "
                    "0.2 deleted: it cannot be extended exactly. Fine-tune its model.keras in a new run folder "
                    "(--model RUN/model.keras) instead."
                )
            config["extended"] = [*before.get("extended", []), {"epochs_before": before["epochs"]}]
            _keep_recorded_class_weights(config, before)
            _record_observation_changes(config, before, before_options, observing, run_dir)
            return run_dir, RESUME
        # A finished run stopped while its model.keras took the statistics of --final-precise-bn ends that.
        if finished and not changed and not observing and not _final_statistics_pending(config, run_dir):
            raise ValueError(
                f"{run_dir} holds a finished run ({run_dir / 'model.keras'}); raise --epochs to extend it, pass "
                "--overwrite to train again, or choose another --output."
            )
        if changed:
            raise ValueError(
                f"{run_dir} holds {'a finished' if finished else 'an interrupted'} run with other settings "
                f"({', '.join(changed)} differ); rerun it with the same options to resume (a larger --epochs "
                "extends it), pass --overwrite to start again, or choose another --output."
            )
        if finished:
            _check_statistics_change(config, before_options, observing)
        if before.get("extended"):  # (a resumed run's config.json is the uninterrupted run's: no empty list)
            config["extended"] = before["extended"]
        _keep_recorded_class_weights(config, before)
        _record_observation_changes(config, before, before_options, observing, run_dir, finished=finished)
        return run_dir, RECOMPUTE_STATISTICS if finished else RESUME
    if started or (run_dir / "model.keras").exists() or (run_dir / "summary.json").exists():
        raise ValueError(f"{run_dir} holds files of another run; pass --overwrite or choose another --output.")
    return run_dir, START


def _same_setting(key, before, now):
    """Whether option `key` recorded as `before` asks for what `now` does. `--output` always does (the run is
    the folder found, by whatever path), a path option does when both name the same place (relative or
    absolute, through links) or the same folder of the data kfcn ships (a run started with one install of
    kfcn resumes with another's), and any other option when the values are equal.

    Example:
    >>> _same_setting("output", "runs/a", "/home/me/runs/a"), _same_setting("epochs", 10, 20)
    (True, False)
    """
    if key == "output" or before == now:
        return True
    if key in PATH_OPTIONS and isinstance(before, str) and isinstance(now, str):
        return _place(before) == _place(now)
    return False


def _place(path):
    """Where `path` points: `@samples/...` within the data kfcn ships (under `kfcn/assets/` of any install
    whose folder this install ships too), else its absolute path with links resolved."""
    from kfcn.recipes import samples_root

    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i : i + 2] == ("kfcn", "assets") and i + 2 < len(parts):
            inside = Path(*parts[i + 2 :])
            if (samples_root() / inside.parts[0]).is_dir():
                return f"@samples/{inside.as_posix()}"
    return os.path.realpath(path)


def _kept_note(config):
    """For a refusal: where a finished run keeps its model.keras as it was before its statistics were recomputed."""
    run_dir = Path(config["output"])
    try:
        kept = json.loads((run_dir / "summary.json").read_text()).get("statistics_recomputed", {}).get("kept")
    except (OSError, ValueError):
        kept = None
    if kept and (run_dir / kept).is_file():
        return f"model.keras as it was before them is kept as {run_dir / kept}"
    return "no copy of them was kept"


def _check_statistics_change(config, before_options, observing):
    """A finished run can take new batch-norm statistics, not give back the ones it replaced: its model.keras's
    statistics come from --final-precise-bn N where that is set, else from --precise-bn N."""
    others = [key for key in observing if key not in ("precise_bn", "final_precise_bn")]
    if others:
        shown = ", ".join(f"--{key.replace('_', '-')} {before_options[key]}" for key in others)
        raise ValueError(
            f"{config['output']} holds a finished run: only --final-precise-bn (or --precise-bn) changes it (its "
            f"model.keras's batch-norm statistics); rerun with the recorded {shown}, or raise --epochs to extend "
            "the run."
        )
    if "final_precise_bn" in observing and not config["final_precise_bn"]:
        raise ValueError(
            f"{config['output']} holds a finished run whose model.keras keeps the statistics of --final-precise-bn "
            f"{before_options['final_precise_bn']}; --final-precise-bn 0 cannot bring back the ones they replaced "
            f"({_kept_note(config)}). Rerun with the recorded --final-precise-bn, or give another number of batches."
        )
    if config["final_precise_bn"]:
        if "precise_bn" in observing:
            raise ValueError(
                f"{config['output']} holds a finished run whose model.keras takes its batch-norm statistics from "
                f"--final-precise-bn {config['final_precise_bn']}: change that, and rerun with the recorded "
                f"--precise-bn {before_options['precise_bn']}."
            )
        return
    if not config["precise_bn"]:
        raise ValueError(
            f"{config['output']} holds a finished run whose model.keras keeps the statistics of --precise-bn "
            f"{before_options['precise_bn']}; --precise-bn 0 cannot bring back Keras' moving averages, which it "
            f"replaced ({_kept_note(config)}). Rerun with the recorded --precise-bn, or raise --epochs to train on "
            "with moving averages."
        )
    if config["calibrate_counts"]:
        raise ValueError(
            "--calibrate-counts: new batch-norm statistics would leave the finished run's count calibration stale. "
            "Start a run with --precise-bn instead (each epoch's statistics, then the calibration, in that order)."
        )


def _final_statistics_pending(config, run_dir):
    """Whether a finished run's --final-precise-bn N has yet to be given to its model.keras: summary.json marks
    the statistics of N batches complete only once model.keras holds them."""
    if not config["final_precise_bn"]:
        return False
    try:
        recomputed = json.loads((run_dir / "summary.json").read_text()).get("statistics_recomputed") or {}
    except (OSError, ValueError, AttributeError):  # unreadable: the refusal of a finished run says where it is
        return False
    return not (recomputed.get("precise_bn") == config["final_precise_bn"] and recomputed.get("complete", True))


def _record_observation_changes(config, before, before_options, changed, run_dir, finished=False):
    """Carries config.json's record of the OBSERVING options a resumed run changed, adding this one's:
    `{"after_epoch": E, "val_every": [old, new], ...}`, E the last epoch of the state it resumes from (of a
    finished run, its last epoch: the change is to model.keras's statistics, RECOMPUTE_STATISTICS)."""
    changes = list(before.get("observation_changes", []))
    if changed:
        # A finished run's last epoch is in its summary (kept also where kfcn < 0.2 deleted the backup).
        state = run_dir / ("summary.json" if finished else "backup/training_metadata.json")
        try:
            resumes_after = int(json.loads(state.read_text())["epochs_run" if finished else "epoch"])
        except (OSError, ValueError, KeyError, TypeError):  # no readable backup: the run starts from epoch 1
            resumes_after = 0
        changes.append({"after_epoch": resumes_after} | {key: [before_options[key], config[key]] for key in changed})
        shown = ", ".join(f"--{key.replace('_', '-')} {before_options[key]} -> {config[key]}" for key in changed)
        if finished:
            print(f"after the last epoch ({resumes_after}) of a finished run: {shown}")
        else:
            print(f"from epoch {resumes_after + 1} on: {shown} (they change what the run measures, not what it trains)")
    if changes:
        config["observation_changes"] = changes


def _keep_recorded_class_weights(config, before):
    """A resumed or extended run trains with the class weights and the precision its config.json records, not
    ones recomputed (on another machine, `--precision auto` could choose otherwise)."""
    if before.get("class_weight_values") is not None:
        config["class_weight_values"] = before["class_weight_values"]
    if before.get("precision_used") is not None:
        config["precision_used"] = before["precision_used"]


class replace_old_run:  # noqa: N801  (a context manager used as a statement)
    """Moves an old run's files (and its `kfcn card`, which describes it) aside before training over it, and puts
    them back if the new run fails before it completes its first epoch; they are deleted once it has."""

    def __init__(self, run_dir, enabled):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.aside = self.run_dir / f".kfcn-replaced-{os.getpid()}"
        self.moved = []

    def __enter__(self):
        if self.enabled:
            for path in self._old_files():
                self.aside.mkdir(exist_ok=True)
                os.replace(path, self.aside / path.name)
                self.moved.append(path.name)
        return self

    def _old_files(self):
        return [path for pattern in REPLACED_RUN_FILES for path in sorted(self.run_dir.glob(pattern))]

    def first_epoch_done(self):
        import shutil

        shutil.rmtree(self.aside, ignore_errors=True)
        self.moved = []

    def __exit__(self, kind, error, traceback):
        if self.moved:  # the new run failed before its first epoch: the old one comes back whole
            import shutil

            for new in self._old_files():  # what the new run wrote
                if new.is_dir():
                    shutil.rmtree(new, ignore_errors=True)
                else:
                    new.unlink(missing_ok=True)
            for name in self.moved:
                os.replace(self.aside / name, self.run_dir / name)
            self.aside.rmdir()
        return False


@contextlib.contextmanager
def held_by_this_process(run_dir, wait_seconds=1.0):
    """Holds the run folder `run_dir` (which exists) for one `kfcn train` process while it reads and writes
    there: a second process given the same --output is refused, naming the fix, instead of training beside the
    first and mixing their epochs, logs and checkpoints (a run rerun in a new session while the last session's
    process still runs). The hold is an advisory lock on the folder itself (`flock`), which the system releases
    when the process ends, however it ends: a killed run leaves no stale lock behind. Where the system has no
    `flock` (Windows), nothing is held.

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with held_by_this_process(folder):
    ...     training_now(folder)
    True
    >>> training_now(folder)
    False
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait_seconds  # `training_now` holds it for an instant
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"Another kfcn train process is training in {run_dir} now (it holds the folder); two "
                        "processes there would mix their epochs. Let it finish, or stop it (`pgrep -af 'kfcn "
                        "train'` lists them; `kill PID` stops one after its current step, and the same command "
                        "then resumes), or choose another --output."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(descriptor)  # releases the hold


def training_now(run_dir):
    """Whether a `kfcn train` process holds the run folder `run_dir` now (`held_by_this_process`); None where
    the system cannot tell (no `flock`).

    Example:
    >>> import tempfile
    >>> training_now(tempfile.mkdtemp())
    False
    """
    try:
        import fcntl
    except ImportError:
        return None
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def kept_before_statistics(run_dir, epoch):
    """The copy of a run's model.keras (the checkpoint of `epoch`) as it was before its batch-norm statistics were
    first recomputed after the run (--final-precise-bn, or a finished run's new --precise-bn).

    Example:
    >>> kept_before_statistics(Path("runs/camvid"), 39).name
    'model-epoch-0039-before-statistics.keras'
    """
    return Path(run_dir) / f"model-epoch-{epoch:04d}-before-statistics.keras"

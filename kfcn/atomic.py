"""Writing files and folders so that nothing is ever left half-written.

Every file kfcn writes goes to a temporary name in its destination folder (so the
final rename stays on one file system and is atomic), marked `.kfcn-partial-PID`
with the writing process's id, and is renamed into place only once complete. An
exception or SIGTERM removes the temporary; a SIGKILL can leave one behind, which
`clean_partials` (called by every writer) removes on a later run once its process is
gone. A temporary of a live process (another `--shard` worker writing into the same
folder) is never touched, and neither is any name without kfcn's mark.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path

PARTIAL_MARK = ".kfcn-partial-"  # followed by the owner's process id


def check_writable(folder, what="output folder"):
    """Creates `folder` if needed and checks that files can be written there, before any work.

    Raises:
        ValueError: naming the folder and the fix.

    Example:
    >>> import tempfile
    >>> check_writable(tempfile.mkdtemp()).is_dir()
    True
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"The {what} {folder} exists and is a file, not a folder; choose another path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{PARTIAL_MARK}{os.getpid()}-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"Cannot write to the {what} {folder}: {error.strerror or error}. Choose a writable folder "
            "(check its permissions and free space)."
        ) from None
    return folder


def partial_owner(name):
    """The process id in a kfcn temporary's name, or None for any other name.

    Example:
    >>> partial_owner("a.png.kfcn-partial-4242.png"), partial_owner("report.partial-final.txt")
    (4242, None)
    """
    _, mark, rest = name.partition(PARTIAL_MARK)
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    return int(digits) if mark and digits else None


_IN_FLIGHT = set()  # this process's temporaries being written now (any thread)


def _alive(pid):
    if pid == os.getpid():
        return False  # this process's leftovers; the ones it is writing now are in _IN_FLIGHT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_partials(folder):
    """Removes the temporaries that interrupted kfcn writers left in `folder`: names with kfcn's
    mark whose process is gone (or is this one). Returns how many were removed.

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / f"a.png{PARTIAL_MARK}{os.getpid()}.png").write_bytes(b"x")
    1
    >>> (folder / "report.partial-final.txt").write_bytes(b"a user's file")
    13
    >>> clean_partials(folder), sorted(p.name for p in folder.iterdir())
    (1, ['report.partial-final.txt'])
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        owner = partial_owner(path.name)
        if owner is None or _alive(owner) or path.absolute() in _IN_FLIGHT:
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed += 1
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`), raised where Python runs next, like Ctrl-C."""

    signum = signal.SIGTERM  # what `kfcn.startup.keep_interrupts` delivers again if a gc callback caught it


@contextlib.contextmanager
def _removed_on_sigterm(path):
    """Turns SIGTERM into an exception while `path` is being written (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"terminated (signal {signum}) while writing {path}")

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _temporary_name(path):
    return path.with_name(f"{path.name}{PARTIAL_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yields a temporary path (same folder, same suffix) that becomes `path` on success.

    Write the file at the yielded path; it is renamed to `path` only if the block
    ends without an exception. A folder works too: create it at the yielded path.

    Args:
        path: the final file or folder.
        overwrite: False raises `FileExistsError` if `path` exists (before any work
            and again at the rename).

    Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as temporary:
    ...     _ = temporary.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    check_writable(path.parent, "destination folder")
    clean_partials(path.parent)
    temporary = _temporary_name(path)
    _IN_FLIGHT.add(temporary.absolute())
    try:
        with _removed_on_sigterm(path):
            yield temporary
            if not overwrite and path.exists():
                raise FileExistsError(f"{path} appeared while writing; pass overwrite=True to replace it.")
            if path.is_dir() and temporary.is_dir():
                # A folder cannot be replaced atomically: move the old one aside first.
                old = path.with_name(f"{path.name}{PARTIAL_MARK}{os.getpid()}-old")
                os.replace(path, old)
                os.replace(temporary, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(temporary, path)
    finally:
        _IN_FLIGHT.discard(temporary.absolute())
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()

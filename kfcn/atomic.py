"""Writing files and folders so that nothing is ever left half-written.

Every file kfcn writes goes to a temporary name in its destination folder (so the
final rename stays on one file system and is atomic), marked `.partial`, and is
renamed into place only once complete. An exception or SIGTERM removes the
temporary; a SIGKILL can leave only a `*.partial*` name, which `clean_partials`
(called by every writer) removes on the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path

PARTIAL_MARK = ".partial-"


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
        probe = folder / f"{PARTIAL_MARK}write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"Cannot write to the {what} {folder}: {error.strerror or error}. Choose a writable folder "
            "(check its permissions and free space)."
        ) from None
    return folder


def clean_partials(folder):
    """Removes what an interrupted kfcn writer left in `folder` (`*.partial-*` names).

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "a.png.partial-12").write_bytes(b"x")
    1
    >>> clean_partials(folder), sorted(folder.iterdir())
    (1, [])
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if PARTIAL_MARK in path.name:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def _removed_on_sigterm(path):
    """Turns SIGTERM into an exception while `path` is being written (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"terminated (signal {signum}) while writing {path}")

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
    try:
        with _removed_on_sigterm(path):
            yield temporary
            if not overwrite and path.exists():
                raise FileExistsError(f"{path} appeared while writing; pass overwrite=True to replace it.")
            if path.is_dir() and temporary.is_dir():
                # A folder cannot be replaced atomically: move the old one aside first.
                old = path.with_name(f"{path.name}{PARTIAL_MARK}old-{os.getpid()}")
                os.replace(path, old)
                os.replace(temporary, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()

"""Locations of the sample data kfcn ships with its repository."""

from __future__ import annotations

from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def isbi2012_dir():
    """The shipped 25-slice copy of the ISBI 2012 membrane data (`examples/data/isbi2012`).

    Example:
    >>> sorted(p.name for p in isbi2012_dir().iterdir())
    ['README.md', 'images', 'labels']
    """
    path = REPOSITORY_ROOT / "examples" / "data" / "isbi2012"
    if not path.is_dir():
        raise FileNotFoundError(
            f"The ISBI 2012 sample data is not at {path}; it ships with kfcn's source repository "
            "(examples/data/isbi2012). Clone the repository, or point kfcn.data.folder_dataset at your copy."
        )
    return path

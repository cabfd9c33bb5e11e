"""Named training recipes: every setting of a kfcn model in one file shipped with the package.

`kfcn train --recipe NAME` starts from the recipe (flags and `--config` override it), and
the run folder's `config.json` records the result, so the file and the command that makes
a shipped model are one thing. A path written `@samples/...` points into the data the
package ships (`kfcn.samples`). A recipe whose data kfcn does not ship (CamVid, the VGG cells) lists under
`requires:` the options that must give it (e.g. `images`, `labels`) and says under `data:`
where to find it; `kfcn train` refuses to start without them, naming the flags.

Example:
>>> sorted(RECIPES)
['camvid-segnet', 'camvid-unet', 'isbi2012', 'vgg-cells']
>>> options = recipe("isbi2012")
>>> options["filters"], options["weight_map"], options["images"].endswith("isbi2012/images")
(32, 'unet', True)
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
RECIPES = tuple(sorted(path.stem for path in FOLDER.glob("*.yaml")))
NOT_OPTIONS = ("description", "requires", "data")  # what a recipe file says beside its options


def recipe(name):
    """The options of recipe `name` as a dict (option name -> value), sample-data paths resolved.

    Raises:
        ValueError: an unknown name, listing the recipes there are.
    """
    options = _read(name)
    for key in NOT_OPTIONS:
        options.pop(key, None)
    for key, value in options.items():
        if isinstance(value, str) and value.startswith("@samples/"):
            options[key] = str(samples_root() / value.removeprefix("@samples/"))
    return options


def describe(name):
    """The one-line description of recipe `name`."""
    return _read(name).get("description", "")


def data_requirements(name):
    """`(options, where)`: the options a user must give to run recipe `name` (its data, when kfcn does
    not ship it) and a sentence saying where that data is found; `((), "")` for a recipe with its data.

    Example:
    >>> data_requirements("camvid-unet")[0]
    ('images', 'labels')
    >>> data_requirements("isbi2012")
    ((), '')
    """
    text = _read(name)
    return tuple(text.get("requires") or ()), " ".join(str(text.get("data") or "").split())


def _read(name):
    import yaml

    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; kfcn ships {', '.join(RECIPES)}.")
    return yaml.safe_load((FOLDER / f"{name}.yaml").read_text())


def samples_root():
    """The folder of the data kfcn ships, which a recipe's `@samples/...` paths point into."""
    from kfcn.samples import isbi2012_dir

    return isbi2012_dir().parent

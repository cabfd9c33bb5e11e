"""Named training recipes: every setting of a kfcn model in one file shipped with the package.

`kfcn train --recipe NAME` starts from the recipe (flags and `--config` override it), and
the run folder's `config.json` records the result, so the file and the command that makes
a shipped model are one thing. A path written `@samples/...` points into the data the
package ships (`kfcn.samples`).

Example:
>>> sorted(RECIPES)
['isbi2012']
>>> options = recipe("isbi2012")
>>> options["filters"], options["weight_map"], options["images"].endswith("isbi2012/images")
(32, 'unet', True)
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
RECIPES = tuple(sorted(path.stem for path in FOLDER.glob("*.yaml")))


def recipe(name):
    """The options of recipe `name` as a dict (option name -> value), sample-data paths resolved.

    Raises:
        ValueError: an unknown name, listing the recipes there are.
    """
    import yaml

    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; kfcn ships {', '.join(RECIPES)}.")
    options = yaml.safe_load((FOLDER / f"{name}.yaml").read_text())
    options.pop("description", None)
    for key, value in options.items():
        if isinstance(value, str) and value.startswith("@samples/"):
            options[key] = str(_samples_root() / value.removeprefix("@samples/"))
    return options


def describe(name):
    """The one-line description of recipe `name`."""
    import yaml

    return yaml.safe_load((FOLDER / f"{name}.yaml").read_text()).get("description", "")


def _samples_root():
    from kfcn.samples import isbi2012_dir

    return isbi2012_dir().parent

"""kfcn.data loads each name on first use; every public name is the function or class it names."""

import importlib
import inspect
import types

import pytest

import kfcn.data


def test_every_public_name_is_what_its_home_defines_even_after_every_submodule_is_imported():
    for submodule in kfcn.data._SUBMODULES:
        importlib.import_module(f"kfcn.data.{submodule}")  # sets kfcn.data.<submodule> on the package
    for name in kfcn.data.__all__:
        value = getattr(kfcn.data, name)
        assert not isinstance(value, types.ModuleType), f"kfcn.data.{name} is a module, not the function"
        assert callable(value) and value.__name__ == name
        assert inspect.getmodule(value).__name__ == kfcn.data._HOMES[name]


def test_submodules_and_names_are_listed_and_unknown_names_refused():
    assert {"unet_weight_map", "folder_dataset", "tfds_datasets"} <= set(dir(kfcn.data))
    assert isinstance(kfcn.data.tfds_datasets, types.ModuleType)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        kfcn.data.no_such_thing  # noqa: B018

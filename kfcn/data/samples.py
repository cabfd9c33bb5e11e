"""Locations of the sample data and model kfcn ships (re-exported from the TensorFlow-free `kfcn.samples`)."""

from kfcn.samples import isbi2012_dir, shipped_model_path

__all__ = ["isbi2012_dir", "shipped_model_path"]

"""Model builders: every architecture is a Keras functional graph made from shared blocks."""

from kfcn.models.backbones import BACKBONES, encoder_of, resolve_backbone, set_encoder_freeze
from kfcn.models.fcn import fcn
from kfcn.models.plain_cnn import plain_cnn
from kfcn.models.precision import with_policy
from kfcn.models.registry import FAMILIES, build, head_of, options, output_activation
from kfcn.models.segnet import segnet
from kfcn.models.sizes import unet_valid_input_size, unet_valid_output_size
from kfcn.models.unet import unet


def required_multiple(model):
    """The multiple every input side must be of: the model's largest total stride.

    Computed from the graph (`kfcn.analysis.receptive_field`), so it works for any
    Keras model, kfcn's or not.

    Example:
    >>> required_multiple(unet((None, None, 1), depth=3, filters=4))
    8
    """
    from kfcn.analysis.receptive_field import receptive_field

    return receptive_field(model).required_multiple


__all__ = [
    "BACKBONES",
    "FAMILIES",
    "build",
    "encoder_of",
    "head_of",
    "options",
    "output_activation",
    "fcn",
    "plain_cnn",
    "required_multiple",
    "resolve_backbone",
    "segnet",
    "set_encoder_freeze",
    "unet",
    "with_policy",
    "unet_valid_input_size",
    "unet_valid_output_size",
]

"""The names kfcn gives a model's image input and its input-scaling layer.

Inference, analysis and export find these in any loaded model by name, so they live here, below
every package that builds or reads models (the coordinate-frame input's name,
`kfcn.layers.FRAME_INPUT_NAME`, belongs to the layer that takes it).

Example:
>>> from kfcn.models import unet
>>> model = unet((None, None, 1), filters=2, depth=1)
>>> model.inputs[0].name == IMAGE_INPUT_NAME, model.get_layer(INPUT_SCALING_NAME).scale
(True, 0.00392156862745098)
"""

IMAGE_INPUT_NAME = "image"
INPUT_SCALING_NAME = "input_scaling"

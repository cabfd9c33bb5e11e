"""`kfcn inspect MODEL` (parameters, layers, input contract, sizes, receptive field, `--erf PNG`) and
`kfcn receptive-field MODEL` (the per-layer table alone)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kfcn.cli.common import add_unsafe_option, load


def register(commands):
    text = "parameters, layers, input contract, valid sizes, receptive field"
    sub = commands.add_parser("inspect", help=text, description=text)
    sub.add_argument("model", help="a .keras file")
    add_unsafe_option(sub)
    sub.add_argument("--erf", default=None, metavar="PNG", help="write the effective receptive field heat map")
    sub.set_defaults(run=run)
    text = "print the per-layer receptive-field table of a model"
    field = commands.add_parser("receptive-field", help=text, description=text)
    field.add_argument("model", help="a .keras file")
    add_unsafe_option(field)
    field.add_argument("--size", type=int, default=None, help="input side to trace at")
    field.set_defaults(run=run_receptive_field)


def run_receptive_field(args):
    from kfcn.analysis import receptive_field

    model = load(args)
    receptive_field(model, input_size=None if args.size is None else (args.size, args.size)).summary()


def head_description(model):
    """What the output means, from the activation of the layer that makes it (`kfcn.models.head_of`)."""
    from kfcn.models.registry import head_of, output_activation

    head, activation = head_of(model), output_activation(model)
    if head != "regression":
        return {"binary": "binary mask (sigmoid)", "semantic": "classes (softmax)"}[head]
    if activation in (None, "linear"):
        return "values / logits (linear)" if activation else "values (no final activation)"
    return f"values (activation {activation})"


def _accepted_sizes(model, geometry):
    """A line on the input sides the model takes, with examples (and their output sides if they differ)."""
    static = tuple(model.inputs[0].shape[1:3])
    if all(side is not None for side in static):
        return f"fixed input size {static[0]}x{static[1]}"
    examples = []
    for wanted in (1, 64, 256, 512, 1024):
        size = geometry.valid_input_size(model, wanted)
        output = geometry.output_size(model, size)
        text = str(size) if output == size else f"{size} (-> {output})"
        if text not in examples:
            examples.append(text)
    if geometry.margin:
        rule = f"every {geometry.multiple} px, where each pooling stage gets an even size (output = input - 2 x margin)"
    else:
        rule = f"multiples of {geometry.multiple}"
    return f"accepted input sides: {rule}; e.g. {', '.join(examples)}"


def _layer_table(model):
    """One line a layer (name, type, output shape, parameters): `model.summary` without boxes or wrapping."""
    header = f"{'layer':<34}{'type':<24}{'output shape':<26}{'params':>12}"
    lines = [header, "-" * len(header)]
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape[1:]))
        except (AttributeError, ValueError):  # a layer used several times has no single output
            shape = "(several)"
        lines.append(f"{layer.name[:33]:<34}{type(layer).__name__[:23]:<24}{shape[:25]:<26}{layer.count_params():>12,}")
    return "\n".join(lines)


def run(args):
    from kfcn.analysis import check_fully_convolutional, receptive_field
    from kfcn.atomic import check_writable
    from kfcn.inference import model_geometry

    erf_path = Path(args.erf) if args.erf else None
    if erf_path is not None:
        if erf_path.suffix.lower() != ".png":
            raise ValueError(f"--erf {erf_path} must be a .png file.")
        check_writable(erf_path.parent, "--erf folder")
    model = load(args)
    check_fully_convolutional(model, "kfcn inspect")  # before any line is printed: a classifier is named at once
    total = model.count_params()
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    print(
        f"{args.model}: model {model.name!r}, {total:,} parameters ({trainable:,} trainable, "
        f"{total - trainable:,} non-trainable)\n"
    )
    print(_layer_table(model))
    geometry = model_geometry(model)
    _print_contract(model, geometry)
    field = receptive_field(model)
    field.summary()
    if erf_path is not None:
        _write_effective_field(model, geometry, field, erf_path)


def _print_contract(model, geometry):
    scaling = geometry.input_range
    print("\ninput contract:")
    print(f"  channels: {geometry.channels} (channels-last)")
    print(
        f"  pixels: raw values in [{scaling[0]:g}, {scaling[1]:g}], scaled to [0, 1] inside the model (input_scaling)"
        if scaling
        else "  pixels: taken as they come (the model has no input_scaling layer)"
    )
    print(f"  head: {head_description(model)}, {model.outputs[0].shape[-1]} output channel(s)")
    print("geometry:")
    print(
        f"  total stride {geometry.multiple}, margin {geometry.margin} px (valid padding)"
        if geometry.margin
        else f"  total stride {geometry.multiple}, 'same' padding (output size = input size)"
    )
    print(f"  {_accepted_sizes(model, geometry)}\n")


def _write_effective_field(model, geometry, field, erf_path):
    from kfcn.analysis import effective_receptive_field
    from kfcn.atomic import atomic_path

    static = tuple(model.inputs[0].shape[1:3])
    # Traced on an input at least as large as the theoretical field (and 256 px), as the model
    # card measures it: on a smaller one the border cuts the field and inflates the radius.
    finite = [int(math.ceil(v)) for v in field.size if math.isfinite(v)]
    wanted = max([256, *finite]) + 2 * geometry.margin
    side = static if all(static) else (geometry.valid_input_size(model, wanted),) * 2
    erf = effective_receptive_field(model, (*side, geometry.channels), samples=8)
    with atomic_path(erf_path) as temporary:
        erf.save_png(temporary)
    print(
        f"\nwrote {erf_path}: effective receptive field at {side[0]}x{side[1]}: 95 % of the gradient within "
        f"{erf.radius_95} px of the centre ({erf.coverage:.0%} of the theoretical {erf.theoretical_size:g} px)"
    )

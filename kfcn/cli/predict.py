"""`kfcn predict IMAGES... --output DIR`: files, globs or folders through a model, each output written atomically."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np

from kfcn.cli.common import add_model_option, load, model_path

TASKS = ("auto", "segmentation", "counting", "regression")
FORMATS = ("png", "png16", "tiff")


def register(commands):
    sub = commands.add_parser(
        "predict",
        help="predict image files, globs or folders; probability/label maps and colour overlays",
        description="Predicts each image (whole if it fits one tile, else tile by tile) and writes, per image, "
        "STEM.png (probability, or labels with --labels), STEM_overlay.png (classes tinted on the image) and, "
        "for value maps, STEM_heatmap.png. Without --model the shipped ISBI 2012 membrane U-Net is used.",
    )
    sub.add_argument("images", nargs="+", help="image files (PNG, TIFF, JPEG, BMP; raw pixel values), globs or folders")
    sub.add_argument("--output", "-o", required=True, help="folder for the outputs (created if needed)")
    add_model_option(sub)
    _add_output_options(sub.add_argument_group("outputs"))
    _add_tiling_options(sub.add_argument_group("tiling (images larger than one call)"))
    _add_compute_options(sub.add_argument_group("computation"))
    sub.set_defaults(run=run)


def _add_output_options(group):
    group.add_argument(
        "--task",
        default="auto",
        choices=TASKS,
        help="auto: segmentation for sigmoid/softmax heads, "
        "else regression; counting prints the sum of the density map per image",
    )
    group.add_argument(
        "--format",
        default="png",
        choices=FORMATS,
        help="png: 8-bit; png16: 16-bit; tiff: float32 with every output channel",
    )
    group.add_argument("--labels", action="store_true", help="write class labels instead of probabilities")
    group.add_argument("--threshold", type=float, default=0.5, help="foreground threshold of a one-channel output")
    group.add_argument("--no-overlay", action="store_true", help="skip the overlay / heat-map PNG")
    group.add_argument(
        "--skip-existing", action="store_true", help="leave images whose outputs exist (resume a folder)"
    )


def _add_tiling_options(group):
    group.add_argument(
        "--tile",
        type=_tile_option,
        default="auto",
        help="tile side for images larger than it; auto (default): the whole image in one call when the "
        "process's peak memory then fits --memory-gib, else the largest tile that does",
    )
    group.add_argument(
        "--memory-gib",
        type=float,
        default=4.0,
        help="peak resident memory of the whole process that --tile auto keeps within (GiB)",
    )
    group.add_argument(
        "--overlap-mode",
        default="exact",
        choices=("exact", "erf"),
        help="tile overlap when --overlap is not given: the receptive field (exact) or the effective one (cheaper)",
    )
    group.add_argument("--overlap", type=int, default=None, help="tile overlap (default: exact, the receptive field)")
    group.add_argument(
        "--blend",
        default="none",
        choices=("none", "linear", "gaussian"),
        help="none: each tile gives only its central pixels (exact); linear, gaussian: overlapping outputs averaged",
    )
    group.add_argument("--batch", type=int, default=4, help="tiles per model call")


def _add_compute_options(group):
    group.add_argument("--tta", default="none", choices=("none", "flips", "d4"), help="test-time augmentation")
    group.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="compute precision (mixed: about 2x faster on GPUs and BF16 CPUs; outputs stay float32)",
    )
    group.add_argument(
        "--engine",
        default="keras",
        choices=("keras", "litert"),
        help="litert: run a float32 TFLite conversion with XNNPACK, the fastest on CPUs (converted once per "
        "input shape, seconds each: pays off over many images or tiles)",
    )
    group.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="predict only worker I's share of N (files I, I+N, ...): run N workers, e.g. one per GPU or host",
    )
    group.add_argument(
        "--devices", default="one", choices=("one", "all"), help="all: spread the tiles of each image over every device"
    )


def _tile_option(text):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a number of pixels or 'auto'; got {text!r}") from None


def image_files(arguments):
    """The image files named by `arguments`: files, glob patterns and folders, in order, without repeats.

    Raises:
        ValueError: a path that does not exist, a glob or folder with no images, a `.keras`
            file among the images, or two images that would write the same output name.

    Example:
    >>> from kfcn.samples import isbi2012_dir
    >>> [p.name for p in image_files([str(isbi2012_dir() / "images" / "slice_0[01].png")])]
    ['slice_00.png', 'slice_01.png']
    """
    from kfcn.image_io import IMAGE_SUFFIXES, list_images

    files = []
    for argument in arguments:
        path = Path(argument)
        if path.suffix.lower() == ".keras":
            raise ValueError(f"{argument} is a model, not an image; give it with --model {argument}.")
        if path.is_dir():
            files.extend(list_images(path).values())
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{argument} is not an image file ({', '.join(IMAGE_SUFFIXES)}).")
            files.append(path)
        elif glob.has_magic(argument):
            matches = sorted(Path(m) for m in glob.glob(argument) if Path(m).suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise ValueError(f"No image file matches {argument}.")
            files.extend(matches)
        else:
            raise ValueError(f"Image {argument} does not exist.")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    by_stem = {}
    for path in unique:
        if path.stem in by_stem:
            raise ValueError(
                f"{by_stem[path.stem]} and {path} would both write {path.stem}.png; predict them into separate "
                "--output folders."
            )
        by_stem[path.stem] = path
    return [Path(p) for p in unique]


def resolve_task(task, model):
    """`auto` becomes segmentation for a sigmoid/softmax head, regression for any other."""
    if task != "auto":
        return task
    from kfcn.models import head_of

    return "segmentation" if head_of(model) in ("binary", "semantic") else "regression"


def output_names(stem, task, args):
    main = f"{stem}.tif" if args.format == "tiff" else f"{stem}.png"
    names = [main]
    if not args.no_overlay:
        names.append(f"{stem}_overlay.png" if task == "segmentation" else f"{stem}_heatmap.png")
    return names


def _main_array(prediction, task, args):
    """The array written to STEM.png / STEM.tif."""
    from kfcn.rendering import class_map

    if args.labels and task == "segmentation":
        classes = class_map(prediction, args.threshold)
        if prediction.shape[-1] == 1:  # 0/255 for a binary mask, class indices otherwise
            classes = classes * 255
        return classes.astype(np.uint16 if args.format == "png16" or classes.max() > 255 else np.uint8)
    if args.format == "tiff":
        return prediction.astype(np.float32)
    values = prediction[..., 0] if prediction.shape[-1] == 1 else prediction.max(-1)
    if task != "segmentation":  # a value map: scaled to its own maximum for an image file
        values = values / max(float(np.abs(values).max()), 1e-12)
    top = 65535 if args.format == "png16" else 255
    return (np.clip(values, 0, 1) * top).round().astype(np.uint16 if top > 255 else np.uint8)


def _write(path, array):
    from PIL import Image

    from kfcn.atomic import atomic_path

    with atomic_path(path) as temporary:
        if path.suffix == ".tif":
            import tifffile

            tifffile.imwrite(temporary, array)
        else:
            Image.fromarray(array).save(temporary, format="PNG")


def _update_counts(path, counts):
    """Merges counts into counts.csv under a lock (shard workers share it); earlier rows are kept.

    Called for each image before its outputs are written, so a run stopped at any moment and
    finished with `--skip-existing` has a row for every image whose outputs exist.
    """
    import contextlib

    from kfcn.atomic import atomic_path

    try:
        import fcntl
    except ImportError:  # not POSIX: one writer at a time is the user's to ensure
        fcntl = None
    with open(path.with_name(".counts.csv.lock"), "a") as lock, contextlib.ExitStack() as unlock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            unlock.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        rows = {}
        if path.is_file():
            for line in path.read_text().splitlines()[1:]:
                name, _, value = line.rpartition(",")
                if name:
                    rows[name] = value
        rows.update({name: f"{count:.3f}" for name, count in counts})
        with atomic_path(path) as temporary:
            temporary.write_text("image,count\n" + "".join(f"{name},{value}\n" for name, value in sorted(rows.items())))


def run(args):
    from kfcn.atomic import check_writable

    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must lie strictly between 0 and 1; got {args.threshold}.")
    tile = None if args.tile == "auto" else args.tile
    if not args.memory_gib > 0:
        raise ValueError(f"--memory-gib must be positive; got {args.memory_gib}.")
    for option, value, least in (("--tile", tile, 1), ("--batch", args.batch, 1), ("--overlap", args.overlap, 0)):
        if value is not None and value < least:
            raise ValueError(f"{option} must be an integer >= {least}; got {value}.")
    every_file = files = image_files(args.images)
    if args.shard is not None:
        from kfcn.distribute import parse_shard, shard

        files = shard(files, *parse_shard(args.shard))
    output = check_writable(Path(args.output), "--output folder")  # before minutes of prediction, not after
    if args.devices == "all":
        from kfcn.distribute import data_parallel

        with data_parallel():  # the model is loaded in the scope, so its weights sit on every device
            return _predict_files(args, files, output, every_file)
    return _predict_files(args, files, output, every_file)


def check_output_names(files, output, task, args):
    """Refuses, before any work, an output that would overwrite an input image or another output.

    `files` is every image of the command (all shards: workers share the folder).

    Example:
    >>> import argparse
    >>> args = argparse.Namespace(format="png", no_overlay=False)
    >>> try:
    ...     check_output_names([Path("a.png"), Path("a_overlay.png")], Path("out"), "segmentation", args)
    ... except ValueError as error:
    ...     print(str(error).split(";")[0])
    a.png and a_overlay.png would both write out/a_overlay.png
    """
    inputs = {path.resolve(): path for path in files}
    writers = {}
    for path in files:
        for name in (*output_names(path.stem, task, args), "counts.csv"):
            target = (output / name).resolve()
            if target in inputs:
                raise ValueError(
                    f"{output / name} is an input image ({inputs[target]}) and would be overwritten by the prediction "
                    f"of {path}; write the outputs to another --output folder."
                )
            if name != "counts.csv":
                if target in writers and writers[target] != path:
                    raise ValueError(
                        f"{writers[target]} and {path} would both write {output / name}; predict them into "
                        "separate --output folders or rename one."
                    )
                writers[target] = path


def _predict_files(args, files, output, every_file=None):
    from tqdm.auto import tqdm

    from kfcn.image_io import ChannelConversions, read_model_input

    model = load(args)
    task, geometry = _check_before_predicting(args, model, files, every_file or files, output)
    done = skipped = 0
    conversions = ChannelConversions()  # said once, at the end, not per file
    bar = tqdm(files, desc="predicting", unit="image", disable=None)
    for path in bar:
        names = output_names(path.stem, task, args)
        if args.skip_existing and all((output / name).is_file() for name in names):
            skipped += 1
            continue
        image = read_model_input(path, geometry.channels, geometry.input_range, conversions)  # bit depth, channels
        try:
            prediction = _predict_image(args, model, image)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        if task == "counting":
            count = float(prediction[..., 0].sum(dtype=np.float64))
            _update_counts(output / "counts.csv", [(path.name, count)])
            bar.write(f"{path.name}: count {count:.1f}")
        _write_outputs(args, [output / name for name in names], image, prediction, task, geometry.input_range)
        done += 1
    print(
        f"wrote {done} image(s) to {output} with {model_path(args).name} ({task})"
        + (f"; {skipped} already done (--skip-existing)" if skipped else "")
    )
    if conversions.summary():
        print(f"kfcn predict: note: {conversions.summary()}", file=sys.stderr)


def _check_before_predicting(args, model, files, every_file, output):
    """`(task, geometry)`, once every option, output name and file header is checked: before minutes of
    prediction, one image of another bit depth fails now."""
    from kfcn.image_io import check_bit_depth, stored_dtype
    from kfcn.inference import model_geometry
    from kfcn.inference.litert import check_engine

    task = resolve_task(args.task, model)
    if args.labels and task != "segmentation":
        raise ValueError(f"--labels applies to segmentation models; this one is used for {task}.")
    check_output_names(every_file, output, task, args)
    geometry = model_geometry(model)
    check_engine(args.engine, geometry, _policy(args))
    for path in files:
        try:
            dtype = stored_dtype(path)
        except ValueError:
            continue  # an unreadable file: the reader names it in its turn, after the files before it
        check_bit_depth(dtype, geometry.input_range, path)
    return task, geometry


def _policy(args):
    return args.precision  # "float32" too: a model saved in a mixed policy then computes in float32


def _predict_image(args, model, image):
    from kfcn.inference import predict_tiled

    # Whole or tiled: predict_tiled decides (one call when one tile covers the image).
    return predict_tiled(
        model,
        image,
        args.tile,
        memory_budget=args.memory_gib * 2**30,
        overlap="erf" if args.overlap is None and args.overlap_mode == "erf" else args.overlap,
        blend=args.blend,
        batch_size=args.batch,
        tta=None if args.tta == "none" else args.tta,
        progress=False,
        policy=_policy(args),
        engine=args.engine,
    )


def _write_outputs(args, paths, image, prediction, task, scaling):
    """The main map, then (unless --no-overlay) the overlay or heat map, at `paths` (from `output_names`)."""
    from kfcn.rendering import class_map, heat_map, overlay

    _write(paths[0], _main_array(prediction, task, args))
    if not args.no_overlay:
        picture = (
            overlay(image, class_map(prediction, args.threshold), value_range=scaling)
            if task == "segmentation"
            else heat_map(prediction[..., 0])
        )
        _write(paths[1], picture)

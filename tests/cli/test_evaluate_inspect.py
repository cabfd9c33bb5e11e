"""`kfcn evaluate` and `kfcn inspect` in-process on tiny data, checked against computations written here."""

import json
import re

import keras
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from kfcn.cli import main
from kfcn.evaluation import RAND_THRESHOLDS, isbi2012_original_scores
from kfcn.inference import predict
from kfcn.models import unet
from kfcn.saving import load_model, save_model

pytestmark = pytest.mark.tensorflow_only(reason="the CLI reads files with tf-based kfcn.data")
SIZE = 32


def save_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A tiny U-Net and three 32x32 image / 0-255 mask pairs."""
    folder = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    save_model(unet((None, None, 1), num_classes=1, filters=2, depth=2), folder / "model.keras")
    for index in range(3):
        save_png(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), folder / "images" / f"s{index}.png")
        mask = np.full((SIZE, SIZE), 255, np.uint8)
        mask[:, rng.integers(8, 24)] = 0  # a membrane between two cells
        mask[rng.integers(8, 24), :] = 0
        save_png(mask, folder / "labels" / f"s{index}.png")
    return folder


def evaluate_folder(folder, *options):
    """`kfcn evaluate` of folder/images against folder/labels with folder/model.keras."""
    return [
        "evaluate",
        str(folder / "images"),
        str(folder / "labels"),
        "--model",
        str(folder / "model.keras"),
        *options,
    ]


def read(path):
    return np.asarray(Image.open(path))


def test_evaluate_segmentation_matches_an_independent_computation(binary, tmp_path, capsys):
    report_path = tmp_path / "reports" / "scores.json"
    code = main(
        ["evaluate", str(binary / "images"), str(binary / "labels"), "--model", str(binary / "model.keras")]
        + ["--json", str(report_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["options"] == {"label_mode": "binary", "threshold": 0.5, "border": "singletons", "tta": None}
    model = load_model(binary / "model.keras")
    assert report["parameters"] == model.count_params()
    expected = {"pixel_error": [], "dice": [], "adapted_rand_error": []}
    for index, row in enumerate(report["per_image"]):
        assert row["image"] == f"s{index}.png"
        image, truth = read(binary / "images" / row["image"]), read(binary / "labels" / row["image"]) == 255
        interior = predict(model, image)[..., 0] > 0.5
        overlap = np.sum(interior & truth)
        expected["pixel_error"].append(np.mean(interior != truth))
        expected["dice"].append(2 * overlap / (interior.sum() + truth.sum()))
        # Rand: scipy's labelling (4-connected by default); each predicted membrane pixel its own segment.
        cells, count = ndimage.label(interior)
        cells[cells == 0] = count + 1 + np.arange(np.sum(cells == 0))
        expected["adapted_rand_error"].append(adapted_rand_error(ndimage.label(truth)[0], cells)[0])
    for key, values in expected.items():
        assert [row[key] for row in report["per_image"]] == pytest.approx(values, abs=1e-9), key
        assert report["mean"][key] == pytest.approx(np.mean(values)), key
    assert all(row["rand_error_best"] <= row["adapted_rand_error"] + 1e-12 for row in report["per_image"])
    # The whole set: one confusion matrix, and the challenge's original pixel error (1 - the best
    # Dice of the interior over thresholds, counts pooled over the images), recomputed here.
    maps = [predict(model, read(binary / "images" / f"s{i}.png"))[..., 0] for i in range(3)]
    truths = [read(binary / "labels" / f"s{i}.png") == 255 for i in range(3)]
    wrong = sum(np.sum((p > 0.5) != t) for p, t in zip(maps, truths))
    assert report["whole_set"]["pixel_error"] == pytest.approx(wrong / sum(t.size for t in truths))
    dice = [
        2
        * sum(np.sum((p > th) & t) for p, t in zip(maps, truths))
        / sum(np.sum(p > th) + t.sum() for p, t in zip(maps, truths))
        for th in RAND_THRESHOLDS
    ]
    original = report["whole_set"]["isbi2012_original"]
    assert original["pixel_error"] == pytest.approx(1 - max(dice))
    assert original["rand_error"] == pytest.approx(isbi2012_original_scores(maps, truths)["rand_error"])
    assert f"pixel error {original['pixel_error']:.4f}" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("image"))
    assert "pixel error" in header and "Rand error" in header and "VI split" in header
    rows = [line for line in lines if line.startswith(("s0.png", "s1.png", "s2.png", "mean"))]
    assert len(rows) == 4 and len({len(line) for line in rows + [header]}) == 1  # aligned columns
    assert f"{report['mean']['pixel_error']:.4f}" in rows[-1]


def test_evaluate_index_labels_with_an_ignore_class(tmp_path, capsys):
    rng = np.random.default_rng(1)
    model = unet((None, None, 1), num_classes=3, filters=2, depth=2)
    save_model(model, tmp_path / "model.keras")
    image = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    label = rng.integers(0, 3, (SIZE, SIZE)).astype(np.uint8)
    label[:4] = 9  # void
    save_png(image, tmp_path / "images" / "a.png")
    save_png(label, tmp_path / "labels" / "a.png")
    options = ["--label-mode", "index", "--num-classes", "3", "--ignore-class", "9", "--json", str(tmp_path / "s.json")]
    assert main(evaluate_folder(tmp_path, *options)) == 0
    assert "whole set" in capsys.readouterr().out
    report = json.loads((tmp_path / "s.json").read_text())
    # a softmax over 3 classes: no threshold, and no border rule (that is the binary Rand error's)
    assert report["options"] == {"label_mode": "index", "num_classes": 3, "ignore_class": 9, "tta": None}
    row = report["per_image"][0]
    predicted = predict(load_model(tmp_path / "model.keras"), image).argmax(-1)
    keep = label != 9
    iou = []
    for k in range(3):
        union = np.sum(((predicted == k) | (label == k)) & keep)
        iou.append(np.sum((predicted == k) & (label == k) & keep) / union if union else np.nan)
    assert row["jaccard_per_class"] == pytest.approx(iou, nan_ok=True)
    assert row["mean_iou"] == pytest.approx(np.nanmean(iou))
    assert row["pixel_error"] == pytest.approx(np.mean(predicted[keep] != label[keep]))


def test_evaluate_whole_set_scores_pool_every_pixel_of_the_set(tmp_path, capsys):
    """The whole set's global accuracy, class average and mIoU come from one confusion matrix over
    all images (CamVid's convention), not from the mean of per-image scores: recomputed here from
    the predictions with NumPy, on two images of different sizes where the two disagree."""
    rng = np.random.default_rng(2)
    save_model(unet((None, None, 1), num_classes=3, filters=2, depth=2), tmp_path / "model.keras")
    labels = {}
    for name, size in (("a.png", (32, 48)), ("b.png", (16, 16))):
        save_png(rng.integers(0, 256, size, dtype=np.uint8), tmp_path / "images" / name)
        labels[name] = rng.integers(0, 3, size).astype(np.uint8)
        labels[name][:2] = 7  # void
        save_png(labels[name], tmp_path / "labels" / name)
    options = ["--label-mode", "index", "--num-classes", "3", "--ignore-class", "7"]
    options += ["--class-names", "sky, road,car", "--json", str(tmp_path / "s.json")]
    assert main(evaluate_folder(tmp_path, *options)) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "s.json").read_text())
    model = load_model(tmp_path / "model.keras")
    truth, predicted = [], []
    for name in ("a.png", "b.png"):
        keep = labels[name] != 7
        truth.append(labels[name][keep])
        predicted.append(predict(model, read(tmp_path / "images" / name)).argmax(-1)[keep])
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    iou = [np.sum((truth == k) & (predicted == k)) / np.sum((truth == k) | (predicted == k)) for k in range(3)]
    recall = [np.mean(predicted[truth == k] == k) for k in range(3)]
    whole = report["whole_set"]
    assert whole["class_names"] == ["sky", "road", "car"]
    assert whole["global_accuracy"] == pytest.approx(np.mean(truth == predicted))
    assert whole["iou_per_class"] == pytest.approx(iou)
    assert whole["mean_iou"] == pytest.approx(np.mean(iou))
    assert whole["class_accuracy"] == pytest.approx(np.mean(recall))
    assert whole["pixels_per_class"] == [int(np.sum(truth == k)) for k in range(3)]
    assert np.sum(whole["confusion"]) == truth.size  # the void pixels counted nowhere
    summary = next(line for line in out.splitlines() if line.startswith("whole set"))
    assert f"mIoU {np.mean(iou):.4f}" in summary and f"global accuracy {np.mean(truth == predicted):.4f}" in summary
    road = next(line for line in out.splitlines() if line.startswith("road "))
    assert f"{iou[1]:.4f}" in road and f"{recall[1]:.4f}" in road


def test_evaluate_refuses_class_names_that_do_not_match_the_classes(binary, capsys):
    arguments = ["evaluate", str(binary / "images"), str(binary / "labels"), "--model", str(binary / "model.keras")]
    assert main(arguments + ["--class-names", "membrane,cell,extra"]) == 2
    assert "--class-names gives 3 name(s)" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["rgb", "grey"])
def test_evaluate_counting_sums_the_density(tmp_path, kind):
    rng = np.random.default_rng(2)
    save_model(unet((None, None, 3), num_classes=1, filters=2, depth=2, head="regression"), tmp_path / "model.keras")
    counts = []
    for index in range(2):
        image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        where = rng.choice(SIZE * SIZE, size=3 + index, replace=False)
        if kind == "rgb":  # the VGG cells' files: pure red dots on black
            dots = np.zeros((SIZE, SIZE, 3), np.uint8)
            dots.reshape(-1, 3)[where] = (255, 0, 0)
        else:  # a single-channel annotation: any non-zero pixel is a dot
            dots = np.zeros((SIZE, SIZE), np.uint8)
            dots.reshape(-1)[where] = 1 + np.arange(len(where))
        counts.append(3 + index)
        save_png(image, tmp_path / "images" / f"c{index}.png")
        save_png(dots, tmp_path / "dots" / f"c{index}.png")
    arguments = ["evaluate", str(tmp_path / "images"), str(tmp_path / "dots"), "--model", str(tmp_path / "model.keras")]
    assert main(arguments + ["--task", "counting", "--json", str(tmp_path / "s.json")]) == 0
    report = json.loads((tmp_path / "s.json").read_text())
    model = load_model(tmp_path / "model.keras")
    sums = [float(predict(model, read(tmp_path / "images" / f"c{i}.png")).sum()) for i in range(2)]
    assert [row["true_count"] for row in report["per_image"]] == counts
    assert [row["predicted_count"] for row in report["per_image"]] == pytest.approx(sums, rel=1e-5)
    errors = np.abs(np.array(sums) - counts)
    assert report["mean"]["absolute_error"] == pytest.approx(errors.mean(), rel=1e-5)
    assert report["mean"]["relative_error"] == pytest.approx(np.mean(errors / counts), rel=1e-5)
    assert report["options"] == {"tta": None}  # the segmentation options do not apply to a count


def test_evaluate_counting_refuses_colour_marks_that_are_not_dots(tmp_path, capsys):
    save_model(unet((None, None, 3), num_classes=1, filters=2, depth=2, head="regression"), tmp_path / "model.keras")
    dots = np.zeros((SIZE, SIZE, 3), np.uint8)
    dots[..., 0] = 200  # reddish everywhere: not one dot, and not to be guessed at
    dots[3, 4] = (255, 0, 0)
    save_png(np.zeros((SIZE, SIZE, 3), np.uint8), tmp_path / "images" / "c0.png")
    save_png(dots, tmp_path / "dots" / "c0.png")
    arguments = ["evaluate", str(tmp_path / "images"), str(tmp_path / "dots"), "--model", str(tmp_path / "model.keras")]
    assert main(arguments + ["--task", "counting"]) == 2
    err = capsys.readouterr().err
    assert "c0.png is a colour image with" in err and "not pure red (255, 0, 0)" in err


def identity_model():
    """Outputs its raw input: a restoration whose PSNR is that of the input itself."""
    inputs = keras.Input((None, None, 1), name="image")
    outputs = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros")(inputs)
    return keras.Model(inputs, outputs)


def test_evaluate_restoration_psnr_by_formula(tmp_path, capsys):
    rng = np.random.default_rng(3)
    save_model(identity_model(), tmp_path / "model.keras")
    clean = rng.integers(20, 236, (SIZE, SIZE), dtype=np.uint8)
    noisy = (clean.astype(int) + rng.integers(-8, 9, clean.shape)).astype(np.uint8)
    save_png(noisy, tmp_path / "images" / "r.png")
    save_png(clean, tmp_path / "clean" / "r.png")
    arguments = [
        "evaluate",
        str(tmp_path / "images"),
        str(tmp_path / "clean"),
        "--model",
        str(tmp_path / "model.keras"),
    ]
    assert main(arguments + ["--task", "restoration", "--json", str(tmp_path / "s.json")]) == 0
    assert "PSNR (dB)" in capsys.readouterr().out
    row = json.loads((tmp_path / "s.json").read_text())["per_image"][0]
    mse = np.mean((noisy.astype(float) - clean) ** 2)
    assert row["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-5)
    assert 0 < row["ssim"] < 1


def one_line_error(capsys):
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    return error


def test_evaluate_bad_inputs_give_one_line_and_write_nothing(binary, tmp_path, capsys):
    model = str(binary / "model.keras")
    (tmp_path / "empty").mkdir()
    save_png(np.zeros((SIZE, SIZE, 2), np.uint8), tmp_path / "two_channels" / "s0.png")  # grey + alpha
    save_png(np.zeros((SIZE, SIZE), np.uint8), tmp_path / "two_channel_labels" / "s0.png")
    for index in range(3):
        save_png(np.full((SIZE, SIZE), 128 * (index % 2), np.uint8), tmp_path / "odd_labels" / f"s{index}.png")
    (tmp_path / "odd_labels" / "s1.png").unlink()
    save_png(np.array([[0, 128, 255]] * SIZE, np.uint8).repeat(11, 1)[:, :SIZE], tmp_path / "odd_labels" / "s1.png")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    images, labels = str(binary / "images"), str(binary / "labels")
    json_path = tmp_path / "out" / "s.json"
    cases = [
        ([str(tmp_path / "missing"), labels, "--model", model], "does not exist"),
        ([str(tmp_path / "empty"), labels, "--model", model], "no image files"),
        ([images, str(tmp_path / "odd_labels"), "--model", model], r"values \(0, 128, 255\)"),
        ([str(tmp_path / "two_channels"), str(tmp_path / "two_channel_labels"), "--model", model], "2 channels"),
        ([images, labels, "--model", model, "--label-mode", "index", "--num-classes", "3"], r"values 255 outside"),
        ([images, labels, "--model", model, "--task", "restoration"], r"\[0, 1\] values"),
        (
            [images, labels, "--model", str(tmp_path / "absent.keras"), "--json", str(tmp_path / "blocker" / "s.json")],
            "blocker",
        ),
    ]
    for arguments, message in cases:
        if "--json" not in arguments:
            arguments = arguments + ["--json", str(json_path)]
        assert main(["evaluate", *arguments]) == 2, arguments
        error = one_line_error(capsys)
        assert error.startswith("kfcn evaluate: error:") and re.search(message, error), error
        assert not json_path.exists() and not list(json_path.parent.glob("*.partial*"))


def test_inspect_prints_the_facts_and_writes_the_erf(binary, tmp_path, capsys):
    assert main(["inspect", str(binary / "model.keras"), "--erf", str(tmp_path / "maps" / "erf.png")]) == 0
    out = capsys.readouterr().out
    model = load_model(binary / "model.keras")
    assert f"{model.count_params():,} parameters ({model.count_params():,} trainable" in out
    assert "output_conv" in out and "Conv2DTranspose" in out  # the layer table
    assert "raw values in [0, 255]" in out and "binary mask (sigmoid)" in out
    assert "total stride 4" in out and "multiples of 4" in out
    assert "receptive field 44 px" in out
    erf = read(tmp_path / "maps" / "erf.png")
    assert erf.shape == (512, 512, 3)  # a 256-px probe (at least the field), drawn at scale 2
    assert list((tmp_path / "maps").iterdir()) == [tmp_path / "maps" / "erf.png"]


def test_inspect_valid_model_lists_sizes_with_their_outputs(tmp_path, capsys):
    model = unet((None, None, 1), num_classes=2, filters=2, depth=2, padding="valid", input_range=None)
    save_model(model, tmp_path / "valid.keras")
    assert main(["inspect", str(tmp_path / "valid.keras")]) == 0
    out = capsys.readouterr().out
    assert "margin 20 px" in out and "44 (-> 4)" in out and "256 (-> 216)" in out
    assert "no input_scaling layer" in out and "classes (softmax), 2 output channel(s)" in out


def test_inspect_refuses_a_non_png_erf_before_loading(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "absent.keras"), "--erf", str(tmp_path / "erf.jpg")]) == 2
    assert ".png" in one_line_error(capsys)

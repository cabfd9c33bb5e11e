import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from kfcn.data import tfds_datasets


def test_isbi_builder_reads_the_shipped_copy_offline(tmp_path):
    dataset = tfds.load("isbi2012_membranes", split="train", data_dir=str(tmp_path))
    examples = list(dataset.take(2))
    assert examples[0]["image"].shape == (512, 512, 1)
    assert set(np.unique(examples[0]["label"].numpy())) <= {0, 255}
    image, label = next(iter(tfds_datasets.as_pairs(dataset)))
    np.testing.assert_array_equal(image.numpy(), examples[0]["image"].numpy())  # raw pixel values
    assert image.dtype == "float32" and set(np.unique(label.numpy())) == {0, 1}


def test_generic_folder_builder_with_splits(tmp_path):
    root = tmp_path / "camvid_like"
    for split, count in (("train", 3), ("val", 2)):
        for index in range(count):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 8, 3), index, np.uint8)).save(root / split / "images" / f"{index}.png")
            Image.fromarray(np.full((6, 8), 11, np.uint8)).save(root / split / "labels" / f"{index}.png")
    config = tfds.download.DownloadConfig(manual_dir=str(root))
    builder = tfds.builder("image_label_folder", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=config)
    assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["val"].num_examples == 2
    example = next(iter(builder.as_dataset(split="val")))
    assert example["label"].numpy().max() == 11

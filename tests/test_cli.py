import numpy as np
from PIL import Image

from kfcn.cli import main
from kfcn.models import unet


def test_predict_writes_a_png_of_the_image_size(tmp_path, rng):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    Image.fromarray((rng.random((40, 52)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(
        [
            "predict",
            str(tmp_path / "model.keras"),
            str(tmp_path / "in.png"),
            str(tmp_path / "out.png"),
            "--tile",
            "64",
            "--labels",
        ]
    )
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "out.png"))
    assert written.shape == (40, 52) and set(np.unique(written)) <= {0, 255}


def test_errors_are_reported_and_nothing_is_written(tmp_path, capsys):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code = main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "broken.png"), str(tmp_path / "out.png")])
    assert code == 2 and "Cannot read image file" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_receptive_field_table(tmp_path, capsys):
    model = unet((None, None, 1), num_classes=1, filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    assert main(["receptive-field", str(tmp_path / "model.keras")]) == 0
    assert "receptive field 44 px" in capsys.readouterr().out

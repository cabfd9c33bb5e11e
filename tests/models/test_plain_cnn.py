import keras
import numpy as np
import pytest

from kfcn.analysis import receptive_field
from kfcn.models import plain_cnn
from tests.layer_testing import assert_keras_round_trip

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("size", [(17, 13), (40, 41)])
def test_any_size_same_out(size):
    model = plain_cnn((None, None, 2), out_channels=3, num_layers=4, filters=4)
    assert model.predict(np.random.rand(1, *size, 2).astype("float32"), verbose=0).shape == (1, *size, 3)


def test_relu_everywhere_but_last():
    model = plain_cnn((None, None, 1), num_layers=4, filters=4)
    activations = [layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert activations == ["relu", "relu", "relu", "linear"]
    assert receptive_field(model).size == (9, 9)


def test_trains_and_round_trips(tmp_path):
    model = plain_cnn((None, None, 1), num_layers=3, filters=4)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = np.random.rand(4, 16, 16, 1).astype("float32")
    history = model.fit(x, 2 * x, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert_keras_round_trip(model, x[:1], tmp_path)


def test_errors():
    with pytest.raises(ValueError, match="num_layers"):
        plain_cnn(num_layers=0)
    with pytest.raises(ValueError, match="binary head has one sigmoid channel"):
        plain_cnn(out_channels=3, head="binary")

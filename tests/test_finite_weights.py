"""kfcn.finite_weights: NaN and infinite weights are found by name, whatever the CPU does with them."""

import keras
import numpy as np
import pytest

from kfcn.finite_weights import check_finite_weights, non_finite_weights
from kfcn.models import segnet


@pytest.mark.backend
def test_every_non_finite_weight_is_named_and_only_those():
    model = segnet((None, None, 3), num_classes=3, filters=2, depth=2)
    assert non_finite_weights(model) == []
    check_finite_weights(model)
    by_path = {weight.path: weight for weight in model.weights}
    kernel, variance = by_path["encoder1_conv1/kernel"], next(p for p in by_path if p.endswith("moving_variance"))
    values = keras.ops.convert_to_numpy(kernel.value).copy()
    values[0, 0, 0, 0] = np.inf  # one value is enough
    kernel.assign(values)
    by_path[variance].assign(np.full(by_path[variance].shape, np.nan, "float32"))  # a statistic, not trained
    assert sorted(non_finite_weights(model)) == sorted(["encoder1_conv1/kernel", variance])
    with pytest.raises(ValueError, match=r"2 weight variables \(.*'encoder1_conv1/kernel'.*\)"):
        check_finite_weights(model)

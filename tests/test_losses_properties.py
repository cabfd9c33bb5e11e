"""Properties of the set losses over random binary masks (hypothesis, from the `test` extra; the module is
skipped, not an error, where hypothesis is not installed)."""

import numpy as np
import pytest

from kfcn import losses

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
arrays = pytest.importorskip("hypothesis.extra.numpy").arrays

pytestmark = pytest.mark.backend

masks = arrays("float32", (1, 6, 6, 1), elements=st.sampled_from([0.0, 1.0]))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(a=masks, b=masks)
def test_set_measures_are_ordered(a, b):
    # Set measures J = 1 - j and D = 1 - d on binary masks: 0 <= J <= D <= 1.
    jaccard = 1 - float(losses.JaccardLoss()(a, b))
    dice = 1 - float(losses.DiceLoss()(a, b))
    assert -1e-6 <= jaccard <= dice + 1e-6 <= 1 + 2e-6
    if np.array_equal(a, b):
        assert jaccard == pytest.approx(1.0) and dice == pytest.approx(1.0)
    if np.sum(a * b) == 0 and (a.sum() + b.sum()) > 0:
        assert jaccard == pytest.approx(0.0) and dice == pytest.approx(0.0)

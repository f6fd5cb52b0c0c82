"""Learning from strokes: the simulated strokes follow the protocol; training sees painted pixels only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from segdeep.errors import SegdeepError
from segdeep.testing import scene_arrays, tiny_bundle
from segdeep.training import TrainConfig, iter_learn_strokes, simulate_strokes


def test_strokes_paint_inside_their_class_and_stay_small():
    _, truth = scene_arrays(256)
    assert 0 < (simulate_strokes(truth, seed=3, min_class_px=500) != 255).mean() <= 0.02  # the cap
    strokes = simulate_strokes(truth, seed=3, min_class_px=500, max_fraction=0.5)
    painted = strokes != 255
    assert np.array_equal(strokes[painted], truth[painted])  # only pixels of the stroke's class
    big = [k for k in np.unique(truth) if k != 255 and (truth == k).sum() >= 500
           and ndimage.binary_erosion(truth == k, iterations=6).any()]
    assert set(np.unique(strokes[painted])) == set(big)
    assert np.array_equal(strokes, simulate_strokes(truth, seed=3, min_class_px=500, max_fraction=0.5))
    assert not np.array_equal(strokes, simulate_strokes(truth, seed=4, min_class_px=500, max_fraction=0.5))


def test_learning_from_strokes_changes_the_prediction_and_ignores_unpainted(tmp_path):
    from segdeep.models import load_bundle
    from segdeep.predict import predict_array
    from segdeep.runtime import drain

    bundle = tiny_bundle(tmp_path / "tiny.safetensors", "unet", kwargs={"base_channels": 4, "depth": 3},
                         tile_size=64)
    image, truth = scene_arrays(96)
    strokes = simulate_strokes(truth, seed=0, min_class_px=200, max_fraction=0.05)
    config = TrainConfig(tile_size=64, batch_size=2, epochs=2, steps_per_epoch=5, warmup=0.0, lr=1e-2)
    model, card = load_bundle(bundle)
    result = drain(iter_learn_strokes(image, strokes, init=bundle, config=config))
    before, after = predict_array(model, card, image), predict_array(result.model, result.card, image)
    assert (before != after).mean() > 0.05
    with pytest.raises(SegdeepError, match="no strokes"):
        drain(iter_learn_strokes(image, np.full_like(strokes, 255), init=bundle, config=config))

"""segdeep.refine.labels: refining a label array being edited (CRF + clean-up, window, blocks)."""

from __future__ import annotations

import numpy as np
import pytest
from segdeep.crf.dense import CRFParams
from segdeep.errors import SegdeepError
from segdeep.refine.labels import crf_colours, iter_refine_labels, refine_labels


def _scene(size=80):
    truth = np.ones((size, size), np.uint8)
    truth[20:50, 15:60] = 0
    image = np.where(truth == 0, 60, 200).astype(np.uint8)[None].repeat(3, 0)
    noisy = truth.copy()
    noisy[20:50, 15:20] = 1  # the brush missed the left edge of the building
    noisy[60:63, 60:63] = 0  # a stray blob
    return image, noisy, truth


def test_crf_fixes_edges_and_cleanup_removes_blobs():
    image, noisy, truth = _scene()
    out = refine_labels(image, noisy, CRFParams(), num_classes=2, min_region_px=16)
    assert (out != truth).sum() < (noisy != truth).sum() / 5
    assert np.array_equal(noisy, _scene()[1])  # input not modified


def test_window_limits_changes_and_blocks_report_progress():
    image, noisy, truth = _scene()
    gen = iter_refine_labels(image, noisy, num_classes=2, crf=False, min_region_px=16,
                             window=(50, 50, 30, 30), block_size=64)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert events == [(1, 1)]
    assert np.array_equal(out[:50], noisy[:50]) and (out[60:63, 60:63] == 1).all()
    # block-wise equals one block when the halo covers the clean-up
    whole = refine_labels(image, noisy, num_classes=2, crf=False, min_region_px=16, block_size=1024)
    blocks = refine_labels(image, noisy, num_classes=2, crf=False, min_region_px=16, block_size=64, halo=16)
    assert np.array_equal(whole, blocks)


def test_nodata_stays_and_bad_input_is_one_line():
    image, noisy, _ = _scene()
    noisy[0:5, 0:5] = 255
    out = refine_labels(image, noisy, num_classes=2)
    assert (out[0:5, 0:5] == 255).all()
    with pytest.raises(SegdeepError, match="not a class"):
        refine_labels(image, np.full((80, 80), 7, np.uint8), num_classes=2)
    with pytest.raises(SegdeepError, match="same pixels"):
        refine_labels(image[:, :40], noisy, num_classes=2)
    assert crf_colours(np.zeros((1, 4, 4), np.uint16)).shape == (3, 4, 4)

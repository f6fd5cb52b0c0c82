"""Palettes and colour-mask decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from segdeep.classes import DUBAI_CLASSES, classes_from_list, decode_rgb_mask
from segdeep.errors import SegdeepError
from segdeep.models.card import load_classes


def test_decode_exact_colours_and_black_is_ignored():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = DUBAI_CLASSES[0].color
    rgb[0, 1] = DUBAI_CLASSES[4].color
    rgb[0, 2] = DUBAI_CLASSES[5].color
    rgb[1, :] = DUBAI_CLASSES[3].color
    rgb[1, 2] = (0, 0, 0)
    out = decode_rgb_mask(rgb, DUBAI_CLASSES)
    assert out.tolist() == [[0, 4, 5], [3, 3, 255]]
    # band-first input gives the same answer
    np.testing.assert_array_equal(decode_rgb_mask(np.moveaxis(rgb, -1, 0), DUBAI_CLASSES, bands_first=True), out)


def test_wrong_palette_is_reported_with_colours():
    rgb = np.full((10, 10, 3), (12, 34, 56), np.uint8)
    with pytest.raises(SegdeepError, match="#0C2238"):
        decode_rgb_mask(rgb, DUBAI_CLASSES, where="m.png")


def test_load_classes_from_json(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": [{"name": "tree", "color": "#00FF00"},
                                            {"name": "roof", "color": [255, 0, 0]}]}))
    classes = load_classes(path)
    assert [(c.index, c.name, c.color) for c in classes] == [(0, "tree", (0, 255, 0)), (1, "roof", (255, 0, 0))]
    assert load_classes(None) == list(DUBAI_CLASSES)


@pytest.mark.parametrize("items, message", [
    ([{"name": "a", "color": "#GGGGGG"}], "colour"),
    ([{"name": "a", "color": "#000001"}, {"name": "b", "color": "#000001"}], "share a colour"),
    ([{"index": 0, "name": "a", "color": "#000001"}, {"index": 0, "name": "b", "color": "#000002"}], "repeat"),
    ([], "non-empty"),
])
def test_bad_palettes(items, message):
    with pytest.raises(SegdeepError, match=message):
        classes_from_list(items)

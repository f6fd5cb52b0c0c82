"""segdeep.crf.colour: one colour rule for the CRF, and every path that refines reaches the CRF with it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import rasterio
import torch
from segdeep.classes import DUBAI_CLASSES
from segdeep.crf import dense
from segdeep.crf.colour import colour_limits, crf_colours, read_colour_limits
from segdeep.crf.dense import CRFParams
from segdeep.errors import SegdeepError


def _u16(h=96, w=96, seed=0) -> np.ndarray:
    """A smooth 12-bit-like 3-band image (blobs) in 300-3300."""
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((3, h // 16 + 2, w // 16 + 2)))
    img = torch.nn.functional.interpolate(small[None], scale_factor=16, mode="bicubic")[0, :, :h, :w].numpy()
    return (300 + img.clip(0, 1) * 3000 + rng.normal(0, 20, (3, h, w))).clip(1, 4095).astype(np.uint16)


def _stretched(band: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.rint((band.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ the rule


def test_uint8_is_kept_pixel_for_pixel_and_bands_are_chosen():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 20, 30), dtype=np.uint8)
    assert np.array_equal(crf_colours(rgb), rgb)
    assert colour_limits(rgb) is None
    four = np.concatenate([rgb, rng.integers(0, 256, (1, 20, 30), dtype=np.uint8)])
    assert np.array_equal(crf_colours(four), rgb)  # the first three bands
    assert np.array_equal(crf_colours(rgb[0]), np.stack([rgb[0]] * 3))  # one band: grey
    two = crf_colours(rgb[:2])
    assert np.array_equal(two[:2], rgb[:2]) and not two[2].any()  # two bands: a third of zeros
    out = crf_colours(rgb)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_uint16_is_stretched_between_the_2nd_and_98th_percentiles():
    img = _u16()
    out = crf_colours(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    for i in range(3):
        lo, hi = np.percentile(img[i].astype(np.float64), [2, 98])
        assert np.array_equal(out[i], _stretched(img[i], lo, hi))
        assert (out[i] == 0).mean() == pytest.approx(0.02, abs=0.01)
        assert (out[i] == 255).mean() == pytest.approx(0.02, abs=0.01)
    # a single band is repeated, two bands padded, four bands: the first three
    assert np.array_equal(crf_colours(img[:1]), np.stack([out[0]] * 3))
    assert np.array_equal(crf_colours(img[:2])[:2], out[:2]) and not crf_colours(img[:2])[2].any()
    assert np.array_equal(crf_colours(np.concatenate([img, img[:1] * 0 + 7])), out)


def test_float_nan_and_nodata_are_left_out_of_the_statistics():
    img = _u16().astype(np.float32) / 10000.0  # reflectance
    ref = crf_colours(img)
    with_nan = img.copy()
    with_nan[:, :10, :10] = np.nan
    out = crf_colours(with_nan)
    assert not out[:, :10, :10].any()  # NaN -> 0
    finite = img[0][~np.isnan(with_nan[0])].astype(np.float64)
    lo, hi = np.percentile(finite, [2, 98])
    assert np.array_equal(out[0, 10:], _stretched(img[0, 10:], lo, hi))
    # nodata (here 0 in all bands, a quarter of the image) does not darken the stretch
    nodata = img.copy()
    nodata[:, :48, :48] = 0.0
    valid = (nodata != 0).any(axis=0)
    masked = crf_colours(nodata, valid=valid)
    unmasked = crf_colours(nodata)
    lo, hi = np.percentile(img[0][valid].astype(np.float64), [2, 98])
    assert np.array_equal(masked[0][valid], _stretched(img[0][valid], lo, hi))
    assert not np.array_equal(masked[0][valid], unmasked[0][valid])
    assert np.array_equal(ref, crf_colours(img, valid=np.ones(img.shape[1:], bool)))
    # a band without valid pixels, or with one value, becomes 0; nothing is NaN-unsafe
    assert not crf_colours(np.full((3, 5, 5), np.nan, np.float32)).any()
    assert not crf_colours(np.full((1, 5, 5), 1234, np.uint16)).any()
    inf = img.copy()
    inf[0, 0, 0], inf[0, 0, 1] = np.inf, -np.inf
    assert tuple(crf_colours(inf)[0, 0, :2]) == (255, 0)


def test_blocks_with_the_whole_image_limits_have_no_seams(make_geotiff):
    img = _u16(80, 120)
    whole = crf_colours(img)
    limits = colour_limits(img)
    for r, c in ((0, 0), (37, 51), (60, 100)):
        block = img[:, r:r + 40, c:c + 40]
        assert np.array_equal(crf_colours(block, limits=limits), whole[:, r:r + 40, c:c + 40])
    assert not np.array_equal(crf_colours(img[:, :40, :40]), whole[:, :40, :40])  # its own stats differ
    # the statistics of a raster file equal those of the array (nodata from the file's mask)
    img[:, :20, :30] = 0
    path = make_geotiff("u16.tif", img, nodata=0)
    valid = (img != 0).any(axis=0)
    assert read_colour_limits(path) == colour_limits(img, valid=valid)
    assert read_colour_limits(path, [3, 1]) == colour_limits(img[[2, 0]], valid=valid)
    assert read_colour_limits(make_geotiff("u8.tif", np.zeros((3, 8, 8), np.uint8))) is None
    # a big raster is read decimated: close to the exact limits, from a bounded sample
    approx = read_colour_limits(path, max_pixels=2000)
    exact = colour_limits(img, valid=valid)
    assert np.allclose(approx, exact, rtol=0.05)


def test_bad_shapes_are_refused():
    with pytest.raises(SegdeepError, match="bands x height x width"):
        crf_colours(np.zeros((2, 3, 4, 5), np.uint16))


# ------------------------------------------------------------------ every path, the same colours


@dataclass
class Card:
    classes: list = field(default_factory=lambda: list(DUBAI_CLASSES))
    bands: list = field(default_factory=lambda: [1, 2, 3])
    mean: list = field(default_factory=lambda: [1500.0, 1500.0, 1500.0])
    std: list = field(default_factory=lambda: [800.0, 800.0, 800.0])
    scale: float = 1.0
    tile_size: int = 64
    name: str = "test"
    architecture: str = "test"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 6, 3, padding=1)).eval()


def _is_crop(small: np.ndarray, big: np.ndarray) -> bool:
    h, w = small.shape[1:]
    return any(np.array_equal(small, big[:, r:r + h, c:c + w])
               for r in range(big.shape[1] - h + 1) for c in range(big.shape[2] - w + 1))


@pytest.fixture
def spy(monkeypatch):
    """The colour images (3 x h x w uint8) that reach segdeep.crf.dense.dense_crf, in call order."""
    seen: list[np.ndarray] = []
    original = dense.dense_crf

    def recording(probs, image, *args, **kwargs):
        seen.append(torch.as_tensor(image).cpu().numpy().copy())
        return original(probs, image, *args, **kwargs)

    monkeypatch.setattr(dense, "dense_crf", recording)
    return seen


def test_one_uint16_image_gets_the_same_crf_colours_in_predict_refine_and_napari(make_geotiff, tmp_path, spy):
    """``predict --crf`` (raster and array), ``segdeep refine`` and napari's Refine (refine_labels)
    give the CRF the same colours for the same 16-bit image with nodata, block by block included,
    and refine the same labels identically."""
    from segdeep.predict.run import predict_array, predict_raster
    from segdeep.refine.labels import refine_labels
    from segdeep.refine.raster import refine_raster

    img = _u16()
    img[:, :16, :24] = 0  # nodata
    valid = (img != 0).any(axis=0)
    rng = np.random.default_rng(3)
    labels = np.kron(rng.integers(0, 6, (6, 6)), np.ones((16, 16), int)).astype(np.uint8)
    labels[~valid] = 255
    image_path = make_geotiff("scene16.tif", img, nodata=0)
    labels_path = make_geotiff("labels.tif", labels, nodata=255)
    params = CRFParams(iterations=2, bilateral_sxy=10.0)
    expected = crf_colours(img, valid=valid)
    assert len(np.unique(expected)) > 100

    napari = refine_labels(img, labels, params, num_classes=6, image_valid=valid)
    (colours,) = spy
    assert np.array_equal(colours, expected)

    spy.clear()
    refined = refine_raster(image_path, labels_path, tmp_path / "refined.tif", params, block_size=128, cog=False)
    (colours,) = spy
    assert np.array_equal(colours, expected)
    with rasterio.open(refined) as ds:
        assert np.array_equal(ds.read(1), napari)

    spy.clear()
    predict_array(_model(), Card(), img, valid=valid, crf=params)
    (colours,) = spy
    assert np.array_equal(colours, expected)

    spy.clear()
    predict_raster(image_path, (_model(), Card()), tmp_path / "pred", crf=params, block_size=1024, overlap=16,
                   preview=False)
    (colours,) = spy
    assert np.array_equal(colours, expected)

    # blocks: each block's colours are the whole image's (no block-by-block stretch, no seams)
    for run in (lambda: refine_raster(image_path, labels_path, tmp_path / "blocks.tif", params, block_size=64,
                                      halo=8, cog=False),
                lambda: predict_raster(image_path, (_model(), Card()), tmp_path / "pred_blocks",
                                       crf=replace(params, window_size=48), block_size=48, overlap=16,
                                       preview=False)):
        spy.clear()
        run()
        assert len(spy) > 1
        assert all(_is_crop(c, expected) for c in spy)

"""Dense CRF: agreement with pydensecrf (the reference implementation) on real aerial images,
improvement over a corrupted unary, block-wise processing with a halo, determinism, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from segdeep.classes import DUBAI_CLASSES, decode_rgb_mask
from segdeep.crf.dense import (
    CRFParams,
    dense_crf,
    dense_crf_blocks,
    dense_crf_params,
    unary_from_labels,
)
from segdeep.errors import SegdeepError
from segdeep.testing import write_geotiff

SIZE = 512
C = 6


def _dubai() -> Path | None:
    env = os.environ.get("SEGDEEP_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return root / "dubai" if (root / "dubai").is_dir() else None


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


needs_data = pytest.mark.skipif(_dubai() is None, reason="real Dubai images not found (../shared/data or SEGDEEP_SHARED_DATA)")


def _crop(tile: int, part: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    folder = _dubai() / f"tile_{tile}"
    rgb = np.asarray(Image.open(folder / "images" / f"image_part_{part:03d}.jpg").convert("RGB"))
    mask = np.asarray(Image.open(folder / "masks" / f"image_part_{part:03d}.png").convert("RGB"))
    labels = decode_rgb_mask(mask, DUBAI_CLASSES)
    return np.ascontiguousarray(rgb[:size, :size]), np.ascontiguousarray(labels[:size, :size])


def _noisy_probs(labels: np.ndarray, seed: int, noise: float = 1.2) -> np.ndarray:
    """Softened one-hot truth plus smooth logit noise (what a network's blurry output looks like)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    onehot = np.full((C, *labels.shape), 1.0 / C, np.float32)
    valid = labels < C
    onehot[:, valid] = 0.0
    onehot[(labels[valid], *np.nonzero(valid))] = 1.0
    soft = ndimage.gaussian_filter(onehot, (0, 4, 4))
    field = ndimage.gaussian_filter(rng.normal(size=onehot.shape).astype(np.float32), (0, 8, 8))
    logits = 4.0 * soft + field * (noise / field.std())
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def _miou(truth: np.ndarray, pred: np.ndarray) -> float:
    keep = truth < C
    cm = np.bincount(truth[keep].astype(np.int64) * C + pred[keep], minlength=C * C).reshape(C, C)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def _reference(probs: np.ndarray, rgb: np.ndarray, iterations: int, p: CRFParams) -> np.ndarray:
    dcrf = pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf (test oracle, pip pydensecrf2) not installed")
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=p.gaussian_sxy, compat=p.gaussian_compat)
    d.addPairwiseBilateral(sxy=p.bilateral_sxy, srgb=p.bilateral_srgb, rgbim=rgb, compat=p.bilateral_compat)
    return np.array(d.inference(iterations)).reshape(c, h, w)


@needs_data
@pytest.mark.parametrize("tile,part", [(1, 1), (5, 3)])
def test_matches_pydensecrf_on_aerial_images(tile, part):
    rgb, labels = _crop(tile, part)
    probs = _noisy_probs(labels, seed=tile)
    p = CRFParams.deeplab()
    for iterations in (5, 10):
        ref = _reference(probs, rgb, iterations, p)
        ours = dense_crf(torch.from_numpy(probs), _chw(rgb), iterations=iterations, **{
            k: v for k, v in p.kernel_dict().items() if k != "iterations"}).numpy()
        agreement = (ours.argmax(0) == ref.argmax(0)).mean()
        assert agreement >= 0.999, f"{iterations} iterations: argmax agreement {agreement:.5f}"
        assert np.abs(ours - ref).max() < 1e-3


@needs_data
def test_matches_pydensecrf_with_segdeep_defaults_and_odd_size():
    rgb, labels = _crop(2, 1, size=301)  # N not a multiple of 4: the reference's SIMD padding matters
    probs = _noisy_probs(labels, seed=3)
    p = CRFParams()
    ref = _reference(probs, rgb, p.iterations, p)
    ours = dense_crf_params(torch.from_numpy(probs), _chw(rgb), p).numpy()
    assert (ours.argmax(0) == ref.argmax(0)).mean() >= 0.999
    assert np.abs(ours - ref).max() < 1e-3


@needs_data
def test_improves_miou_over_noisy_unary():
    gains = []
    for tile, part in [(6, 1), (3, 2)]:
        rgb, labels = _crop(tile, part)
        probs = _noisy_probs(labels, seed=tile)
        refined = dense_crf_params(torch.from_numpy(probs), _chw(rgb), CRFParams())
        gains.append(_miou(labels, refined.argmax(0).numpy()) - _miou(labels, probs.argmax(0)))
    assert min(gains) > 0.0, gains


@needs_data
def test_blockwise_with_halo_agrees_with_whole_image():
    rgb, labels = _crop(4, 2)
    probs = torch.from_numpy(_noisy_probs(labels, seed=7))
    p = CRFParams()
    whole = dense_crf_params(probs, _chw(rgb), p).argmax(0)
    blocks = dense_crf_blocks(probs, _chw(rgb), block_size=256, params=p).argmax(0)
    agreement = (whole == blocks).float().mean().item()
    assert agreement >= 0.995, agreement


def test_deterministic_and_shapes():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 37, 53, generator=g)
    probs /= probs.sum(0)
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=g)
    a = dense_crf(probs, image, iterations=3)
    b = dense_crf(probs, image.numpy(), iterations=3)
    assert a.shape == (4, 37, 53) and a.dtype == torch.float32 and a.device == probs.device
    assert torch.equal(a, b)
    assert torch.allclose(a.sum(0), torch.ones(37, 53), atol=1e-5)
    assert torch.allclose(dense_crf(probs, image, iterations=0), probs / probs.sum(0), atol=1e-6)


def test_smooths_an_isolated_wrong_pixel():
    probs = torch.full((2, 20, 20), 0.1)
    probs[0] = 0.9
    probs[:, 10, 10] = torch.tensor([0.4, 0.6])  # a weak outlier in a flat grey image
    image = torch.full((3, 20, 20), 128, dtype=torch.uint8)
    assert probs.argmax(0)[10, 10] == 1
    assert dense_crf(probs, image, iterations=5).argmax(0)[10, 10] == 0


def test_unary_from_labels_matches_pydensecrf_energies():
    labels = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)
    probs = unary_from_labels(labels, 3, confidence=0.7)
    assert probs.shape == (3, 2, 3)
    assert torch.allclose(probs.sum(0), torch.ones(2, 3))
    assert torch.allclose(probs[:, 1, 0], torch.full((3,), 1 / 3))
    assert probs[2, 0, 2] == pytest.approx(0.7) and probs[0, 0, 2] == pytest.approx(0.15)
    utils = pytest.importorskip("pydensecrf.utils", reason="pydensecrf (test oracle) not installed")
    shifted = np.where(labels == 255, 0, labels.astype(np.int64) + 1)
    ref = utils.unary_from_labels(shifted, 3, gt_prob=0.7, zero_unsure=True)
    np.testing.assert_allclose(-np.log(probs.numpy().reshape(3, -1)), ref, rtol=1e-6)


def test_params_dict_round_trip():
    p = CRFParams()
    assert CRFParams.from_dict(p.to_dict()) == p
    assert CRFParams.deeplab().bilateral_compat == 10.0
    assert p.halo >= 32
    with pytest.raises(SegdeepError, match="unknown"):
        CRFParams.from_dict({"bilateral_width": 3})


@pytest.mark.parametrize("probs,image,kwargs,match", [
    (torch.rand(6, 8, 8), torch.zeros(3, 8, 9, dtype=torch.uint8), {}, "image must be 3 x 8 x 8"),
    (torch.rand(6, 8, 8), torch.zeros(3, 8, 8), {}, "uint8"),
    (torch.rand(8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8), {}, "classes x height x width"),
    (torch.ones(6, 8, 8, dtype=torch.int64), torch.zeros(3, 8, 8, dtype=torch.uint8), {}, "float"),
    (torch.rand(6, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8), {"iterations": -1}, "iterations"),
    (torch.rand(6, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8), {"bilateral_srgb": 0}, "bilateral_srgb"),
])
def test_errors(probs, image, kwargs, match):
    with pytest.raises(SegdeepError, match=match):
        dense_crf(probs, image, **kwargs)


def test_unary_from_labels_errors():
    with pytest.raises(SegdeepError, match="label value 7"):
        unary_from_labels(np.array([[0, 7]]), 3)
    with pytest.raises(SegdeepError, match="confidence"):
        unary_from_labels(np.array([[0, 1]]), 3, confidence=1.0)


def test_refine_cli_labels_and_probs(tmp_path):
    import rasterio
    from segdeep.cli import main

    h, w = 80, 100
    rgb = np.zeros((3, h, w), np.uint8)
    rgb[:, :, 50:] = 200                      # two flat colour fields
    truth = np.where(np.arange(w)[None, :] < 50, 0, 2).repeat(h, 0).astype(np.uint8)
    labels = truth.copy()
    labels[30:40, 40:50] = 2                   # a mislabelled patch crossing the colour edge
    labels[5:8, 5:8] = 3                       # a speck
    labels[0:4, 90:100] = 255                  # nodata stays nodata
    image = write_geotiff(tmp_path / "image.tif", rgb)
    source = write_geotiff(tmp_path / "labels.tif", labels[None], nodata=255)
    out = tmp_path / "refined.tif"
    code = main(["refine", str(image), str(source), "--out", str(out), "--block-size", "64", "--halo", "32",
                 "--min-region-px", "20", "--majority-size", "3", "--quiet"])
    assert code == 0
    with rasterio.open(out) as ds:
        result = ds.read(1)
        assert ds.crs.to_epsg() == 32640 and ds.transform.a == 0.5
        assert ds.colormap(1)[0][:3] == (60, 16, 152)
    assert (result[0:4, 90:100] == 255).all()
    valid = labels != 255
    assert (result[valid] == truth[valid]).mean() > (labels[valid] == truth[valid]).mean()
    assert (result[5:8, 5:8] == 0).all()

    probs = np.stack([np.full((h, w), 0.1, np.float32)] * 6)
    probs[0, :, :50] = 0.5
    probs[2, :, 50:] = 0.5
    source2 = write_geotiff(tmp_path / "probs.tif", probs)
    out2 = tmp_path / "refined2.tif"
    assert main(["refine", str(image), str(source2), "--out", str(out2), "--quiet", "--iterations", "2"]) == 0
    with rasterio.open(out2) as ds:
        np.testing.assert_array_equal(ds.read(1), truth)


def test_refine_cli_errors(tmp_path, capsys):
    from segdeep.cli import main

    image = write_geotiff(tmp_path / "image.tif", np.zeros((3, 20, 30), np.uint8))
    small = write_geotiff(tmp_path / "small.tif", np.zeros((1, 20, 20), np.uint8))
    assert main(["refine", str(image), str(small), "--out", str(tmp_path / "o.tif")]) == 2
    assert "size 20 x 20 px differs from the image" in capsys.readouterr().err
    bad = write_geotiff(tmp_path / "bad.tif", np.full((1, 20, 30), 9, np.uint8))
    assert main(["refine", str(image), str(bad), "--out", str(tmp_path / "o.tif")]) == 2
    assert "label value 9" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()

"""PredictConfig (one checked settings object) and the one resume fingerprint, in this process, from
the command line and on a Dask cluster."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import rasterio
from segdeep.cli import main
from segdeep.crf.params import CRFParams
from segdeep.errors import SegdeepError
from segdeep.predict.config import PredictConfig
from segdeep.predict.events import BlockDone
from segdeep.predict.journal import JOURNAL_NAME
from segdeep.predict.run import iter_predict
from segdeep.testing import scene_arrays, tiny_bundle, write_geotiff

BLOCKS = dict(overlap=16, block_size=48, preview=False)  # tiles of 64 px (the card's): 9 blocks of 48 px


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 128 px RGB scene with its truth labels, and another truth (a corrected copy)."""
    root = tmp_path_factory.mktemp("scene")
    image, labels = scene_arrays(size=128)
    write_geotiff(root / "scene.tif", image)
    write_geotiff(root / "truth.tif", labels, nodata=255)
    other = labels.copy()
    other[:20, :20] = 2
    write_geotiff(root / "truth_b.tif", other, nodata=255)
    return root


def _interrupt(config: PredictConfig) -> None:
    """Start a run and stop it after its first block (as a killed run leaves it, minus the kill)."""
    gen = iter_predict(config=config)
    for event in gen:
        if isinstance(event, BlockDone):
            break
    gen.close()
    assert json.loads((config.out_dir / JOURNAL_NAME).read_text())["done"]


def _cli(config: PredictConfig, *extra: str) -> list[str]:
    """``segdeep predict`` arguments for ``config``'s image, model, output and tiling, plus ``extra``."""
    return ["predict", str(config.image), "--model", str(config.bundle), "--out", str(config.out_dir),
            "--overlap", str(config.overlap), "--block-size", str(config.block_size), "--quiet", *extra]


def _pixels(path) -> bytes:
    with rasterio.open(path) as ds:
        return ds.read().tobytes()


# ------------------------------------------------------------------------------------------ settings

def test_settings_are_normalised_and_frozen(scene, tmp_path):
    model, card = object(), object()
    config = PredictConfig(image=scene / "scene.tif", out_dir=tmp_path, bundle=(model, card), batch_size="4",
                           workers="AUTO", bands=[3, 2, 1], precision="FP32", window=[0, 0, 64, 64],
                           crf={"iterations": 2})
    assert config.model is model and config.card is card and config.bundle is None
    assert (config.batch_size, config.workers, config.precision) == (4, "auto", "fp32")
    assert config.bands == (3, 2, 1) and config.window == (0, 0, 64, 64)
    assert config.crf == CRFParams(iterations=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tile_size = 128


@pytest.mark.parametrize("settings,msg", [
    (dict(batch_size="many"), "batch size 'many' must be a whole number >= 1 or 'auto'"),
    (dict(workers=0), "workers 0 must be a whole number >= 1 or 'auto'"),
    (dict(tile_size=0), "tile size 0 must be a positive whole number of pixels"),
    (dict(overlap=-1), "overlap -1 must be a whole number of pixels >= 0"),
    (dict(tile_size=64, overlap=40), "overlap 40 is more than half the tile size 64"),
    (dict(block_size=1.5), "block size 1.5 must be a positive whole number of pixels"),
    (dict(precision="fp8"), "precision 'fp8' is not known"),
    (dict(bands="123"), "bands '123': expected 1-based band numbers"),
    (dict(window=(1, 2, 3)), "expected col,row,width,height"),
    (dict(bounds=(10, 0, 5, 1)), "expected left < right and bottom < top"),
    (dict(window=(0, 0, 8, 8), bounds=(0, 0, 1, 1)), "give a window or bounds, not both"),
    (dict(crf=CRFParams(iterations=-1)), "CRF iterations -1 (--crf-iterations): must be >= 0"),
    (dict(out_dir=None), "no output folder given"),
])
def test_bad_settings_are_one_line_errors(scene, tmp_path, settings, msg):
    with pytest.raises(SegdeepError) as err:
        PredictConfig(**{"image": scene / "scene.tif", "out_dir": tmp_path / "o", **settings})
    assert msg in str(err.value) and "\n" not in str(err.value)


def test_keywords_and_config_are_one_or_the_other(scene, tmp_path):
    bundle = tiny_bundle(tmp_path / "m.safetensors")
    config = PredictConfig(image=scene / "scene.tif", bundle=bundle, out_dir=tmp_path / "o")
    with pytest.raises(SegdeepError, match="either config= or settings, not both"):
        next(iter_predict(config=config, overlap=8))
    with pytest.raises(SegdeepError, match=r"unknown prediction setting\(s\) \['overlapp'\]"):
        next(iter_predict(scene / "scene.tif", bundle, tmp_path / "o", overlapp=8))
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- resume from the CLI

def _base(scene, tmp_path, **settings) -> PredictConfig:
    bundle = tiny_bundle(tmp_path / "model.safetensors")
    return PredictConfig(image=scene / "scene.tif", bundle=bundle, out_dir=tmp_path / "out", **BLOCKS, **settings)


def _retrain(config: PredictConfig) -> list[str]:
    tiny_bundle(config.bundle, seed=1)  # the same path, other weights
    return []


def _correct_truth(config: PredictConfig) -> list[str]:
    """Rewrite the truth file in place (as a corrected reference would be)."""
    before = os.stat(config.truth).st_mtime_ns
    with rasterio.open(config.truth) as ds:
        labels = ds.read(1)
    labels[100:, :30] = 0
    write_geotiff(config.truth, labels, nodata=255)
    os.utime(config.truth, ns=(before + 10**9, before + 10**9))  # file systems with coarse times too
    return ["--truth", str(config.truth)]


@pytest.mark.parametrize("case,settings,change,changed", [
    ("model", {}, _retrain, "model"),
    ("truth file", {"truth": "truth.tif"}, lambda c: ["--truth", str(c.truth.with_name("truth_b.tif"))], "truth"),
    ("truth edited", {"truth": "copy"}, _correct_truth, "truth"),
    ("bands", {"bands": (1, 2, 3)}, lambda c: ["--bands", "3,2,1"], "bands"),
    ("crf", {"crf": CRFParams()}, lambda c: ["--crf", "--crf-iterations", "2"], "crf"),
    ("crf off", {}, lambda c: ["--crf"], "crf"),
])
def test_resume_is_refused_after_a_change_that_alters_results(scene, tmp_path, capsys, case, settings, change,
                                                              changed):
    if settings.get("truth") == "copy":
        settings["truth"] = tmp_path / "truth.tif"
        (tmp_path / "truth.tif").write_bytes((scene / "truth.tif").read_bytes())
    elif "truth" in settings:
        settings["truth"] = scene / settings["truth"]
    config = _base(scene, tmp_path, **settings)
    _interrupt(config)
    journal = (config.out_dir / JOURNAL_NAME).read_text()
    extra = change(config)
    if config.truth is not None and "--truth" not in extra:
        extra += ["--truth", str(config.truth)]
    if config.crf is not None and "--crf" not in extra:
        extra += ["--crf"]
    capsys.readouterr()
    code = main(_cli(config, "--resume", *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("segdeep predict: error:") and "\n" not in err and "Traceback" not in err
    assert f"different settings ({changed})" in err or f"different settings (block_size, {changed})" in err
    assert not (config.out_dir / "labels.tif").exists()
    assert (config.out_dir / JOURNAL_NAME).read_text() == journal  # kept for a resume with the old settings


def test_resume_with_nothing_changed_gives_the_same_pixels(scene, tmp_path, capsys):
    config = _base(scene, tmp_path, truth=scene / "truth.tif", crf=CRFParams(iterations=2, window_size=48),
                   probabilities=True)
    _interrupt(config)
    settings = ["--truth", str(config.truth), "--crf", "--crf-iterations", "2", "--crf-window-size", "48", "--probabilities",
                "--workers", "1", "--batch-size", "3"]  # workers and batch size may change on resume
    capsys.readouterr()
    assert main(_cli(config, "--resume", *settings)) == 0
    assert "block(s) already done" in capsys.readouterr().err
    fresh = dataclasses.replace(config, out_dir=tmp_path / "fresh")
    assert main(_cli(fresh, *settings)) == 0
    for name in ("labels.tif", "probabilities.tif"):
        assert _pixels(config.out_dir / name) == _pixels(fresh.out_dir / name), name
    resumed = json.loads((config.out_dir / "run.json").read_text())
    assert resumed["blocks_resumed"] >= 1 and resumed["blocks_resumed"] + resumed["blocks_computed"] == 9
    assert not (config.out_dir / JOURNAL_NAME).exists()


# ------------------------------------------------------------------------------- on a Dask cluster

def test_the_cluster_stores_the_same_fingerprint_and_refuses_a_changed_truth(scene, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (extra napari-segdeep[dask])")
    from segdeep.distributed import connect, iter_predict_distributed, predict_distributed
    from segdeep.distributed.run import STATE_NAME

    config = _base(scene, tmp_path, truth=scene / "truth.tif")
    _interrupt(config)
    on_cluster = dataclasses.replace(config, out_dir=tmp_path / "cluster")
    with connect("local:1") as client:
        gen = iter_predict_distributed(scheduler=client, config=on_cluster)
        for event in gen:
            if isinstance(event, BlockDone):
                break
        gen.close()
        stored = json.loads((on_cluster.out_dir / STATE_NAME).read_text())["fingerprint"]
        assert stored == json.loads((config.out_dir / JOURNAL_NAME).read_text())["fingerprint"]
        changed = dataclasses.replace(on_cluster, truth=scene / "truth_b.tif", resume=True)
        with pytest.raises(SegdeepError, match=r"different settings \(truth\)"):
            predict_distributed(scheduler=client, config=changed)
        got = predict_distributed(scheduler=client, config=dataclasses.replace(on_cluster, resume=True))
    assert got.blocks_resumed >= 1
    assert _pixels(got.labels) == _pixels(_finish(config))


def _finish(config: PredictConfig):
    """Finish the interrupted in-process run; its labels path."""
    gen = iter_predict(config=dataclasses.replace(config, resume=True))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value.labels

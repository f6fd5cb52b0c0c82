"""Scale-out on a Dask cluster: a LocalCluster of 2 single-threaded worker processes on loopback.

The distributed run must give the in-process outputs exactly (labels, probabilities, CRF, scores,
polygons), survive a worker killed mid-run, and not resubmit finished blocks on resume.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (extra napari-segdeep[dask])")

import shapely  # noqa: E402
from segdeep.classes import DUBAI_CLASSES  # noqa: E402
from segdeep.crf.dense import CRFParams  # noqa: E402
from segdeep.distributed import (  # noqa: E402
    connect,
    evaluate_distributed,
    iter_predict_distributed,
    predict_distributed,
    vectorize_distributed,
)
from segdeep.distributed import tasks as _dask_tasks  # noqa: E402
from segdeep.errors import SegdeepError  # noqa: E402
from segdeep.evaluate.rasters import evaluate_rasters  # noqa: E402
from segdeep.export.vectorize import vectorize_raster  # noqa: E402
from segdeep.predict.events import ClusterReady  # noqa: E402
from segdeep.predict.run import BlockDone, PredictStarted, predict_raster  # noqa: E402
from segdeep.testing import tiny_bundle, write_geotiff  # noqa: E402

SETTINGS = dict(block_size=64, overlap=8, preview=False)  # tiles of 32 px (the card's), 72 px blocks


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 3-band image with a nodata corner, truth labels and a tiny U-Net bundle (tile 32 px)."""
    d = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    h, w = 200, 264
    img = (rng.random((3, h, w)) * 60 + 100).astype(np.uint8)
    img[:, 40:130, 50:190] = (rng.random((3, 90, 140)) * 40).astype(np.uint8)
    img[0, 120:180, 10:90] = 250
    img[:, :20, :30] = 0  # nodata
    transform = from_origin(500000.0, 2780000.0, 0.5, 0.5)
    write_geotiff(d / "image.tif", img, transform=transform, nodata=0)
    truth = (img[0] // 50 % 6).astype(np.uint8)
    write_geotiff(d / "truth.tif", truth, transform=transform, nodata=255)
    tiny_bundle(d / "model.safetensors", "unet", name="tiny", kwargs={"base_channels": 4, "depth": 2},
                classes=DUBAI_CLASSES, bands=[1, 2, 3], tile_size=32)
    return d


@pytest.fixture(scope="module")
def ref(data, tmp_path_factory):
    """The in-process run the distributed runs must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    return predict_raster(data / "image.tif", data / "model.safetensors", out, vector="p.gpkg", **SETTINGS)


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as c:
        yield c


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags(), ds.colormap(1) if ds.count == 1 else None, ds.transform, ds.crs


def _unions(path):
    import pyogrio

    df = pyogrio.read_dataframe(path)
    return {int(k): shapely.union_all(df.geometry[df["class_index"] == k].values) for k in sorted(set(df["class_index"]))}


def test_labels_and_polygons_identical_to_in_process(data, ref, client, tmp_path):
    events = []
    got = predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist", scheduler=client,
                              vector="p.gpkg", callback=events.append, **SETTINGS)
    a, b = _read(ref.labels), _read(got.labels)
    assert np.array_equal(a[0], b[0]) and len(np.unique(a[0])) >= 3  # the labels are not trivial
    assert a[1:] == b[1:]  # class tags, colour table, georeference
    assert isinstance(events[0], ClusterReady) and events[0].workers == 2
    started = next(e for e in events if isinstance(e, PredictStarted))
    assert sum(isinstance(e, BlockDone) for e in events) == started.total_blocks == 12
    assert started.total_tiles == 88  # each tile computed once, as in-process (11 x 8 tiles)
    assert not (tmp_path / "dist" / ".segdeep-dask-parts").exists()
    assert json.loads(got.run_json.read_text())["blocks_computed"] == 12
    ua, ub = _unions(ref.vector), _unions(got.vector)
    assert ua.keys() == ub.keys()
    for k in ua:
        assert shapely.equals(ua[k], ub[k]), f"class {k}"
    # the model is loaded once per worker process, not once per block
    loads = client.run(_dask_tasks.model_loads)
    assert all(v["loads"] <= 1 for v in loads.values()), loads


def test_crf_probabilities_truth_window_identical(data, client, tmp_path):
    kwargs = dict(SETTINGS, crf=CRFParams(iterations=2, bilateral_sxy=8.0, window_size=48), probabilities=True,
                  truth=data / "truth.tif",
                  window=(10, 20, 150, 120))
    ref = predict_raster(data / "image.tif", data / "model.safetensors", tmp_path / "ref", **kwargs)
    got = predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist", scheduler=client,
                              **kwargs)
    for name in ("labels", "probabilities"):
        a, b = _read(getattr(ref, name)), _read(getattr(got, name))
        assert np.array_equal(a[0], b[0]), name
        assert a[1:] == b[1:], name
    assert got.scores["confusion_matrix"] == ref.scores["confusion_matrix"]
    assert got.scores["mean_iou"] == ref.scores["mean_iou"]


def test_vectorize_with_scheduler_same_polygons(data, client, tmp_path):
    labels = data / "truth.tif"  # many small regions cut by the 48 px blocks
    a = vectorize_raster(labels, tmp_path / "a.gpkg", block_size=48)
    b = vectorize_distributed(labels, tmp_path / "b.gpkg", scheduler=client, block_size=48)
    assert a["polygons"] == b["polygons"] and a["classes"] == b["classes"]
    ua, ub = _unions(tmp_path / "a.gpkg"), _unions(tmp_path / "b.gpkg")
    assert ua.keys() == ub.keys() and all(shapely.equals(ua[k], ub[k]) for k in ua)


def test_evaluate_with_scheduler_same_scores(data, client):
    with rasterio.open(data / "image.tif") as ds:  # a second "prediction": another quantisation
        other = (ds.read(2) // 40 % 6).astype(np.uint8)
        profile = {**ds.profile, "count": 1, "nodata": 255}
    with rasterio.open(data / "pred.tif", "w", **profile) as out:
        out.write(other[None])
    pred = data / "pred.tif"
    a = evaluate_rasters(pred, data / "truth.tif", block_size=64)
    b = evaluate_distributed(pred, data / "truth.tif", scheduler=client, block_size=64)
    assert a == b
    assert a["confusion_matrix"] != [[0] * 6] * 6


def test_resume_does_not_resubmit_finished_blocks(data, ref, client, tmp_path):
    gen = iter_predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist",
                                   scheduler=client, max_in_flight=2, **SETTINGS)
    for event in gen:
        if isinstance(event, BlockDone) and event.done == 3:
            break
    gen.close()  # interrupted after 3 blocks
    with pytest.raises(SegdeepError, match="different settings"):
        predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist", scheduler=client,
                            resume=True, **{**SETTINGS, "overlap": 4})
    with distributed.get_task_stream(client) as stream:
        got = predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist",
                                  scheduler=client, resume=True, **SETTINGS)
    finish_tasks = [t for t in stream.data if str(t["key"]).startswith("segdeep-finish")]
    assert got.blocks_resumed >= 3
    assert len(finish_tasks) == got.blocks_computed == 12 - got.blocks_resumed
    assert np.array_equal(_read(ref.labels)[0], _read(got.labels)[0])


def test_scheduler_errors(data, tmp_path):
    for bad in ("local:0", "local:x", "nonsense"):
        with pytest.raises(SegdeepError, match="scheduler"), connect(bad):
            pass
    with pytest.raises(SegdeepError, match="path every worker can read"):
        predict_distributed(data / "image.tif", (None, None), tmp_path, scheduler="local:1")


def test_cli_scheduler_address(data, ref, client, tmp_path, capsys):
    from segdeep.cli import main

    address = client.scheduler.address  # tcp://127.0.0.1:PORT: the path users take with a real cluster
    out = tmp_path / "cli"
    assert main(["predict", str(data / "image.tif"), "--model", str(data / "model.safetensors"), "--out", str(out),
                 "--block-size", "64", "--overlap", "8", "--quiet", "--scheduler", address]) == 0
    assert f"cluster {address}, 2 worker(s), dashboard http" in capsys.readouterr().err
    assert np.array_equal(_read(ref.labels)[0], _read(out / "labels.tif")[0])
    assert main(["evaluate", str(out / "labels.tif"), str(data / "truth.tif"), "--out", str(tmp_path / "ev"),
                 "--quiet", "--scheduler", address]) == 0
    assert main(["vectorize", str(out / "labels.tif"), "--out", str(tmp_path / "p.gpkg"), "--quiet",
                 "--block-size", "48", "--scheduler", address]) == 0
    ua, ub = _unions(ref.vector), _unions(tmp_path / "p.gpkg")
    assert ua.keys() == ub.keys() and all(shapely.equals(ua[k], ub[k]) for k in ua)
    assert main(["predict", str(data / "image.tif"), "--model", str(data / "model.safetensors"), "--out",
                 str(tmp_path / "x"), "--scheduler", "local:0"]) == 2
    assert "local:N with N >= 1" in capsys.readouterr().err


# Last: it kills a worker of the shared cluster.
def test_worker_killed_mid_run_output_complete(data, ref, client, tmp_path):
    address, victim = sorted(client.run(os.getpid).items())[0]
    killed = False
    gen = iter_predict_distributed(data / "image.tif", data / "model.safetensors", tmp_path / "dist",
                                   scheduler=client, max_in_flight=2, **SETTINGS)
    with distributed.get_task_stream(client) as stream:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                got = stop.value
                break
            if isinstance(event, BlockDone) and not killed:
                os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its tasks and results are redone
                killed = True
    assert killed and got.blocks_computed == 12
    assert any(t["worker"] == address for t in stream.data)  # it had run tasks (results held in its memory)
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()
    assert np.array_equal(_read(ref.labels)[0], _read(got.labels)[0])


def test_local_cluster_workers_spread_over_gpus():
    """local:N on a multi-GPU machine: worker i uses GPU i mod count (LocalCluster names workers 0..N-1)."""
    assert [_dask_tasks.gpu_for_worker(i, 2) for i in range(4)] == [0, 1, 0, 1]
    assert [_dask_tasks.gpu_for_worker(str(i), 3) for i in range(4)] == [0, 1, 2, 0]
    assert _dask_tasks.gpu_for_worker("tcp://10.0.0.5:40123", 4) in range(4)
    assert _dask_tasks.gpu_for_worker(1, 0) is None  # no GPU: nothing to choose


def test_local_cluster_workers_torch_threads(client):
    """The plugin of local:N clusters: one torch thread per worker (a task is one core)."""
    assert set(client.run(torch.get_num_threads).values()) == {1}

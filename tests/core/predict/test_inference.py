"""Streaming tiled inference: the invariants a user relies on (tiny rasters, tiny models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from segdeep.errors import SegdeepError
from segdeep.predict.run import (
    BlockDone,
    PredictStarted,
    TilesDone,
    iter_predict,
    predict_array,
    predict_raster,
)
from segdeep.testing import write_geotiff

# Shared by the tests and the subprocess of the resume test (exec'd in both, so weights are equal).
MODELS = '''
import time
from dataclasses import dataclass, field
import torch
from segdeep.classes import DUBAI_CLASSES

@dataclass
class Card:
    classes: list = field(default_factory=lambda: list(DUBAI_CLASSES))
    bands: list = field(default_factory=lambda: [1, 2, 3])
    mean: list = field(default_factory=lambda: [0.4, 0.4, 0.4])
    std: list = field(default_factory=lambda: [0.25, 0.25, 0.25])
    scale: float = 1 / 255
    tile_size: int = 64
    name: str = "test"
    architecture: str = "test"

class PointNet(torch.nn.Module):
    """Receptive field of one pixel."""
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 16, 1)
        self.b = torch.nn.Conv2d(16, 6, 1)
    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

class ConvNet(torch.nn.Module):
    """Three 3x3 convolutions: receptive field 7 px."""
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 6, 3, padding=1))
    def forward(self, x):
        return self.net(x)

class SlowNet(ConvNet):
    def forward(self, x):
        time.sleep(0.15)
        return super().forward(x)

def make(kind):
    torch.manual_seed(0)
    return {"point": PointNet, "conv": ConvNet, "slow": SlowNet}[kind]().eval()
'''
_ns: dict = {}
exec(MODELS, _ns)  # noqa: S102 - test models, defined once for both processes
Card, make = _ns["Card"], _ns["make"]

CRS = "EPSG:32640"
TRANSFORM = from_origin(500000.0, 2780000.0, 0.5, 0.5)


def write_image(path: Path, width: int = 250, height: int = 300, nodata=None, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (blobs, so predictions have regions rather than noise)."""
    rng = np.random.default_rng(seed)
    small = rng.random((3, height // 16 + 2, width // 16 + 2))
    img = torch.nn.functional.interpolate(torch.from_numpy(small)[None], scale_factor=16, mode="bicubic")[0]
    img = (img[:, :height, :width].numpy() * 255 + rng.normal(0, 8, (3, height, width))).clip(1, 255)
    img = img.astype(np.uint8)
    write_geotiff(path, img, crs=CRS, transform=TRANSFORM, nodata=nodata)
    return img


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "scene.tif"
    write_image(p)
    return p


def run(image, out, model="conv", **kw):
    kw.setdefault("overlap", 16)
    kw.setdefault("preview", False)
    return predict_raster(image, (make(model), Card()), out, **kw)


def test_labels_identical_for_every_block_size(image, tmp_path):
    results = {bs: read(run(image, tmp_path / f"b{bs}", block_size=bs).labels) for bs in (48, 100, 200, 10_000)}
    whole = results.pop(10_000)
    assert len(np.unique(whole)) > 1
    for bs, labels in results.items():
        assert np.array_equal(labels, whole), f"block size {bs} differs"


def test_results_do_not_depend_on_the_number_of_workers(image, tmp_path):
    """Batches computed 1, 2 or 3 at a time on threads of their own (as they finish, in any order)
    give the same probabilities, byte for byte, and no worker thread outlives the run."""
    probs = {}
    for n in (1, 2, 3):
        result = run(image, tmp_path / f"w{n}", block_size=100, workers=n, probabilities=True)
        with rasterio.open(result.probabilities) as ds:
            probs[n] = ds.read()
    assert np.array_equal(probs[1], probs[2]) and np.array_equal(probs[1], probs[3])
    assert not [t for t in threading.enumerate() if t.name.startswith("segdeep-tiles")]


def test_auto_workers_split_the_cores(monkeypatch):
    from segdeep import runtime

    cpu = torch.device("cpu")
    for cores, expect in ((1, (1, 1)), (2, (2, 1)), (16, (2, 8))):
        monkeypatch.setattr(runtime, "available_cores", lambda cores=cores: cores)
        assert runtime.resolve_workers("auto", cpu) == expect
    assert runtime.resolve_workers(4, cpu) == (4, 4) and runtime.resolve_workers("32", cpu) == (32, 1)
    assert runtime.resolve_workers("auto", torch.device("cuda")) == (0, 0)  # batches in the calling thread


def test_the_crf_gets_every_core_even_from_a_worker_thread():
    """A thread other than the main one starts with 1 torch thread (napari runs jobs in one); the
    CRF sets all cores for itself and puts the thread's setting back."""
    from segdeep.runtime import all_cores, available_cores

    seen = []

    def job():
        torch.set_num_threads(1)
        with all_cores():
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=job)
    t.start()
    t.join()
    assert seen == [available_cores(), 1]


def test_probabilities_identical_for_every_block_size(image, tmp_path):
    """Every tile's contribution reaches every block it covers exactly once, whether it waited in
    memory (next block) or on disk (next row of blocks): the blended probabilities are the same
    bytes, and they sum to 1 (255) everywhere."""
    probs = {}
    for bs in (48, 10_000):
        result = run(image, tmp_path / f"b{bs}", block_size=bs, probabilities=True)
        with rasterio.open(result.probabilities) as ds:
            probs[bs] = ds.read()
        assert {p.name for p in (tmp_path / f"b{bs}").iterdir()} == {"labels.tif", "labels.qml", "labels.tif.aux.xml",
                                                                 "probabilities.tif", "run.json"}
    assert np.array_equal(probs[48], probs[10_000])
    assert np.abs(probs[48].astype(int).sum(0) - 255).max() <= 6  # rounded per class


def test_tiled_equals_one_shot_for_a_model_whose_receptive_field_fits_the_overlap(image, tmp_path):
    model, card = make("point"), Card()
    labels = read(run(image, tmp_path / "o", model="point", block_size=100).labels)
    with rasterio.open(image) as ds:
        x = (ds.read().astype(np.float32) / 255 - 0.4) / 0.25
    with torch.inference_mode():
        one_shot = model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
    assert np.array_equal(labels, one_shot.astype(np.uint8))
    assert card.classes[0].index == 0


def test_tiled_agrees_with_one_shot_for_a_real_architecture(tmp_path):
    from segdeep.models.registry import create_model

    path = tmp_path / "s.tif"
    write_image(path, 256, 256, seed=3)
    torch.manual_seed(1)
    model = create_model("unet", num_classes=6, in_channels=3, base_channels=8, depth=3).eval()
    card = Card(tile_size=128)
    # Random weights give small logit margins (a trained model's are larger), so the tile context
    # matters more here than in use: overlap half a tile.
    labels = read(predict_raster(path, (model, card), tmp_path / "o", overlap=64, preview=False).labels)
    with rasterio.open(path) as ds:
        x = (ds.read().astype(np.float32) / 255 - 0.4) / 0.25
    with torch.inference_mode():
        one_shot = model(torch.from_numpy(x)[None])[0].argmax(0).numpy()
    agreement = (labels == one_shot).mean()
    assert agreement >= 0.995, agreement


def test_outputs_keep_crs_and_transform_and_run_json_describes_the_run(image, tmp_path):
    result = run(image, tmp_path / "o", probabilities=True, preview=True)
    with rasterio.open(result.labels) as ds, rasterio.open(image) as src:
        assert ds.crs == src.crs and ds.transform == src.transform
        assert (ds.width, ds.height) == (src.width, src.height) and ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.colormap(1)[0][:3] == (60, 16, 152)
    with rasterio.open(result.probabilities) as ds:
        probs = ds.read()
        assert ds.count == 6 and ds.transform == TRANSFORM
    assert np.abs(probs.astype(int).sum(0) - 255).max() <= 6  # rounded per class
    assert np.array_equal(probs.argmax(0), read(result.labels)) or (probs.argmax(0) == read(result.labels)).mean() > 0.99
    run_json = json.loads(result.run_json.read_text())
    assert run_json["parameters"]["overlap"] == 16 and run_json["device"] == "cpu"
    assert run_json["peak_rss_mb"] > 0 and run_json["timings_s"]["forward"] > 0
    assert run_json["model_card"]["classes"][0]["name"] == "building"
    assert result.preview.exists()
    left = {p.name for p in (tmp_path / "o").iterdir()}
    assert left == {"labels.tif", "labels.qml", "labels.tif.aux.xml", "probabilities.tif", "preview.png", "run.json"}


def test_nodata_pixels_get_label_255_and_empty_tiles_are_skipped(tmp_path):
    path = tmp_path / "nd.tif"
    img = write_image(path, 250, 300, nodata=0)
    img[:, :150, :] = 0  # top half nodata: whole tiles there are empty
    img[:, 200:210, 100:110] = 0
    with rasterio.open(path, "r+") as ds:
        ds.write(img)
    result = run(path, tmp_path / "o", block_size=100)
    labels = read(result.labels)
    assert (labels[:150] == 255).all() and (labels[200:210, 100:110] == 255).all()
    assert (labels[160:200] != 255).all()
    assert result.tiles_skipped > 0
    assert result.tiles_skipped + result.tiles_computed == len(list(_grid_tiles(250, 300, 64, 16)))


def _grid_tiles(width, height, tile, overlap):
    from segdeep.predict.tiles import Rect, TileGrid

    return TileGrid(width, height, tile, overlap).tiles_touching(Rect(0, 0, width, height))


def test_region_window_and_bounds_match_the_full_run(image, tmp_path):
    full = read(run(image, tmp_path / "full").labels)
    win = run(image, tmp_path / "win", window=(37, 61, 120, 90), block_size=48)
    with rasterio.open(win.labels) as ds:
        assert ds.transform == TRANSFORM * TRANSFORM.translation(37, 61)
        assert np.array_equal(ds.read(1), full[61:151, 37:157])
    left, top = TRANSFORM * (100, 40)
    right, bottom = TRANSFORM * (180, 200)
    box = run(image, tmp_path / "box", bounds=(left, bottom, right, top), preview=True)
    with rasterio.open(box.labels) as ds:
        assert (ds.width, ds.height) == (80, 160)
        assert np.array_equal(ds.read(1), full[40:200, 100:180])


def test_closing_the_generator_cancels_and_leaves_no_final_file(image, tmp_path):
    out = tmp_path / "o"
    gen = iter_predict(image, (make("conv"), Card()), out, overlap=16, block_size=48)
    events = []
    for event in gen:
        events.append(event)
        if isinstance(event, TilesDone) and event.done >= 2:
            break
    gen.close()
    assert isinstance(events[0], PredictStarted) and events[0].total_blocks > 4
    assert not any(isinstance(e, BlockDone) and e.done == e.total for e in events)
    finals = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert finals == set()
    assert not (out / ".segdeep-pieces").exists()  # scratch of the tiles waiting for later blocks
    assert not [t for t in threading.enumerate() if t.name.startswith("segdeep-tiles")]


def test_resume_after_kill_recomputes_only_unfinished_blocks(image, tmp_path):
    out = tmp_path / "o"
    script = tmp_path / "job.py"
    script.write_text(MODELS + f'''
from segdeep.predict.run import predict_raster
predict_raster({str(image)!r}, (make("slow"), Card()), {str(out)!r}, overlap=16, block_size=96, preview=False)
''')
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = out / ".segdeep-journal.json"
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and proc.poll() is None:
        if journal.exists():
            try:
                done = json.loads(journal.read_text())["done"]
            except (json.JSONDecodeError, KeyError):
                done = []
            if len(done) >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "labels.tif").exists()
    resumed = run(image, out, block_size=96, resume=True)
    assert resumed.blocks_resumed >= 3
    assert resumed.blocks_computed + resumed.blocks_resumed == 12
    reference = run(image, tmp_path / "ref", block_size=96)
    assert np.array_equal(read(resumed.labels), read(reference.labels))
    assert resumed.tiles_computed < reference.tiles_computed
    assert not (out / ".segdeep-journal.json").exists()
    assert not (out / ".segdeep-pieces").exists()  # the killed run's scratch is cleared too


def test_resume_with_different_settings_is_refused(image, tmp_path):
    out = tmp_path / "o"
    gen = iter_predict(image, (make("conv"), Card()), out, overlap=16, block_size=48)
    for event in gen:
        if isinstance(event, BlockDone):
            break
    gen.close()
    with pytest.raises(SegdeepError, match="different settings"):
        run(image, out, block_size=48, overlap=8, resume=True)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(bands=[1, 2]), "takes 3 band"),
    (dict(bands=[1, 2, 4]), "has 3 band"),
    (dict(overlap=64), "smaller than the tile"),
    (dict(tile_size=0), "tile size 0 must be a positive"),
    (dict(window=(200, 0, 100, 10)), "not inside"),
    (dict(batch_size="many"), "batch size"),
    (dict(device="tpu"), "not known"),
    (dict(workers=0), "workers 0 must be"),
    (dict(workers="all"), "workers 'all' must be"),
])
def test_bad_input_is_a_clear_error_before_any_compute(image, tmp_path, kwargs, msg):
    out = tmp_path / "o"
    with pytest.raises(SegdeepError, match=msg):
        run(image, out, **kwargs)
    assert not out.exists() or not any(out.iterdir())


def test_a_model_error_in_a_worker_stops_the_run_with_its_message(image, tmp_path):
    """A model that returns the wrong number of classes fails on a worker thread: the error reaches
    the caller as one line, nothing appears under a final name and no worker thread is left."""
    class FourClasses(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x)

    out = tmp_path / "o"
    with pytest.raises(SegdeepError, match="expected N x 6 x H x W logits"):
        predict_raster(image, (FourClasses().eval(), Card()), out, overlap=16, block_size=48, workers=2)
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == set()
    assert not [t for t in threading.enumerate() if t.name.startswith("segdeep-tiles")]


def test_output_folder_not_writable_is_an_error(image, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SegdeepError, match="not a folder"):
        run(image, blocker)


def test_truth_gives_a_report_consistent_with_the_labels(image, tmp_path):
    reference = run(image, tmp_path / "ref")
    truth = read(reference.labels).copy()
    truth[:50] = (truth[:50] + 1) % 6  # 50 rows disagree
    truth_path = tmp_path / "truth.tif"
    write_geotiff(truth_path, truth, crs=CRS, transform=TRANSFORM, nodata=255)
    result = run(image, tmp_path / "o", truth=truth_path, block_size=100)
    assert result.scores["pixel_accuracy"] == pytest.approx(250 / 300)
    assert Path(result.report["json"]).exists()


def test_crf_refines_blocks_and_is_recorded(image, tmp_path):
    from segdeep.crf.dense import CRFParams

    params = CRFParams(iterations=2, bilateral_sxy=10.0)  # halo 32 px: keeps the test quick
    region = (40, 40, 150, 150)
    result = run(image, tmp_path / "o", crf=params, block_size=96, window=region)
    labels = read(result.labels)
    plain = read(run(image, tmp_path / "p", block_size=96, window=region).labels)
    assert 0.5 < (labels == plain).mean() < 1.0
    assert json.loads(result.run_json.read_text())["parameters"]["crf"] == params.to_dict()


def test_crf_labels_identical_for_every_block_size_and_order(image, tmp_path):
    """The CRF runs on windows of one global grid (here 80 px, not a multiple of the 48 px tile
    stride): blocks of 80, 160 or 10,000 px, a window of the raster and predict_array agree."""
    from segdeep.crf.dense import CRFParams, dense_crf_blocks

    params = CRFParams(iterations=2, bilateral_sxy=8.0, window_size=80)  # halo 32 px
    results = {bs: run(image, tmp_path / f"b{bs}", crf=params, block_size=bs, probabilities=True)
               for bs in (80, 160, 10_000)}
    labels = {bs: read(r.labels) for bs, r in results.items()}
    assert np.array_equal(labels[80], labels[160]) and np.array_equal(labels[80], labels[10_000])
    with rasterio.open(results[80].probabilities) as a, rasterio.open(results[10_000].probabilities) as b:
        assert np.array_equal(a.read(), b.read())
    whole = run(image, tmp_path / "plain", probabilities=True)
    assert 0.5 < (labels[80] == read(whole.labels)).mean() < 1.0  # the CRF changed some labels
    win = read(run(image, tmp_path / "win", crf=params, block_size=80, window=(80, 80, 80, 160)).labels)
    assert np.array_equal(win, labels[80][80:240, 80:160])  # windows aligned on the grid: same labels
    with rasterio.open(image) as ds:
        pixels = ds.read()
    assert np.array_equal(predict_array(make("conv"), Card(), pixels, overlap=16, crf=params), labels[80])
    # the same windows as the refine paths: CRF of the blended probabilities, window by window
    with rasterio.open(whole.probabilities) as ds:
        probs = torch.from_numpy(ds.read().astype(np.float32) / 255)
    refined = dense_crf_blocks(probs, torch.from_numpy(pixels), params=params).argmax(0).numpy()
    assert (refined == labels[80]).mean() > 0.97  # probabilities rounded to 8 bits here


def test_predict_array_matches_the_raster_pipeline(image, tmp_path):
    labels = read(run(image, tmp_path / "o").labels)
    with rasterio.open(image) as ds:
        pixels = ds.read()
    assert np.array_equal(predict_array(make("conv"), Card(), pixels, overlap=16), labels)
    small, probs = predict_array(make("conv"), Card(), pixels[:, :40, :50], overlap=16, probabilities=True)
    assert small.shape == (40, 50) and probs.shape == (6, 40, 50)


def test_plain_png_without_georeference_works_in_pixel_coordinates(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    result = run(path, tmp_path / "o", preview=True)
    with rasterio.open(result.labels) as ds:
        assert ds.crs is None and ds.shape == (90, 120)
        assert (ds.read(1) < 6).all()

"""Bad inputs, faults and clashes over every command: exit code 2, one line on stderr naming the file,
no traceback, no output under a final name, and the inputs' bytes unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from segdeep.classes import DUBAI_CLASSES
from segdeep.cli import main
from segdeep.testing import TRANSFORM, scene_arrays, tiny_bundle, write_geotiff


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    image, truth = scene_arrays(96)
    img = write_geotiff(root / "scene.tif", image, tiled=True, blockxsize=32, blockysize=32)
    truth_path = write_geotiff(root / "truth.tif", truth, nodata=255)
    bundle = tiny_bundle(root / "tiny.safetensors", "unet", classes=DUBAI_CLASSES)
    labels = root / "labels_in.tif"
    write_geotiff(labels, (truth % 6).astype(np.uint8), nodata=255)
    return {"root": root, "image": img, "truth": truth_path, "bundle": bundle, "labels": labels}


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(capsys, argv, inputs, finals=(), expect=()):
    """Run ``segdeep argv``: exit 2, one line naming what is expected, inputs unchanged, no finals."""
    before = {p: sha(p) for p in inputs}
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err  # progress lines may come first
    err = errors[0]
    assert err.startswith(f"segdeep {argv[0]}: error: "), err
    for text in expect:
        assert text in err, err
    assert {p: sha(p) for p in inputs} == before
    for f in finals:
        assert not Path(f).exists(), f
    return err


# ------------------------------------------------------------ an output that is an input (item 3)

def test_refine_onto_its_labels_same_path_hard_link_and_symlink(files, tmp_path, capsys):
    labels = tmp_path / "labels.tif"
    labels.write_bytes(files["labels"].read_bytes())
    os.link(labels, tmp_path / "hard.tif")
    (tmp_path / "soft.tif").symlink_to(labels)
    for out in (labels, tmp_path / "hard.tif", tmp_path / "soft.tif", tmp_path / "sub" / ".." / "labels.tif"):
        refused(capsys, ["refine", files["image"], labels, "--out", out, "--quiet"], [labels],
                expect=["is the labels", "destroy the input"])


def test_preview_vectorize_export_train_onto_an_input(files, tmp_path, capsys):
    image = tmp_path / "img.tif"
    image.write_bytes(files["image"].read_bytes())
    refused(capsys, ["preview", image, files["labels"], "--out", image], [image], expect=["is the image"])
    labels = tmp_path / "labels.tif"
    labels.write_bytes(files["labels"].read_bytes())
    refused(capsys, ["vectorize", labels, "--out", labels, "--format", "gpkg"], [labels],
            expect=["is the label raster"])
    bundle = tmp_path / "m.safetensors"
    bundle.write_bytes(files["bundle"].read_bytes())
    refused(capsys, ["export-onnx", bundle, "--out", bundle], [bundle], expect=["is the model bundle"])
    refused(capsys, ["train", "--images", image, "--labels", files["truth"], "--init", bundle, "--out", bundle],
            [bundle, image], expect=["is the --init bundle"])


def test_predict_and_evaluate_refuse_an_input_inside_out_under_an_output_name(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    image = out / "labels.tif"
    image.write_bytes(files["image"].read_bytes())
    refused(capsys, ["predict", image, "--model", files["bundle"], "--out", out, "--quiet"], [image],
            finals=[out / "run.json", out / "preview.png"], expect=["output labels.tif", "is the image"])
    os.link(files["image"], out / "preview.png")
    refused(capsys, ["predict", files["image"], "--model", files["bundle"], "--out", out, "--quiet"],
            [files["image"]], finals=[out / "run.json"], expect=["is the image"])
    pred = out / "report.json"
    pred.write_bytes(files["labels"].read_bytes())
    refused(capsys, ["evaluate", pred, files["truth"], "--out", out, "--quiet"], [pred],
            finals=[out / "report.html", out / "report.md"], expect=["is the prediction"])


def test_vectorize_into_a_folder_says_give_a_file(files, tmp_path, capsys):
    refused(capsys, ["vectorize", files["labels"], "--out", tmp_path], [files["labels"]],
            expect=["is a folder", ".gpkg"])


# ------------------------------------------------------------------------- damaged inputs (item 7)

@pytest.fixture
def truncated(files, tmp_path):
    data = files["image"].read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    labels = files["labels"].read_bytes()
    cut_labels = tmp_path / "cut_labels.tif"
    cut_labels.write_bytes(labels[: len(labels) * 2 // 3])
    return path, cut_labels


def test_truncated_geotiff_is_one_line_in_every_command(files, truncated, tmp_path, capsys):
    cut, cut_labels = truncated
    refused(capsys, ["predict", cut, "--model", files["bundle"], "--out", tmp_path / "o", "--quiet"], [cut],
            finals=[tmp_path / "o" / "labels.tif", tmp_path / "o" / "run.json"], expect=["cut.tif"])
    refused(capsys, ["refine", cut, files["labels"], "--out", tmp_path / "r.tif", "--quiet"], [cut],
            finals=[tmp_path / "r.tif"], expect=["cut.tif"])
    refused(capsys, ["evaluate", cut_labels, files["truth"], "--out", tmp_path / "ev", "--quiet"], [cut_labels],
            finals=[tmp_path / "ev" / "report.json"], expect=["cut_labels.tif"])
    refused(capsys, ["vectorize", cut_labels, "--out", tmp_path / "v.gpkg", "--quiet"], [cut_labels],
            finals=[tmp_path / "v.gpkg"], expect=["cut_labels.tif"])


@pytest.mark.parametrize("kind", ["pickle", "truncated", "foreign"])
def test_bad_train_checkpoint_is_one_line_and_runs_no_code(files, tmp_path, capsys, kind):
    import pickle

    import torch

    out = tmp_path / "m.safetensors"
    ckpt = tmp_path / "m.safetensors.checkpoint.pt"
    marker = tmp_path / "pwned"
    if kind == "pickle":
        class Evil:
            def __reduce__(self):
                return (Path.touch, (marker,))
        ckpt.write_bytes(pickle.dumps({"arch": Evil()}))
    elif kind == "truncated":
        torch.save({"arch": "unet", "model": {"w": torch.zeros(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    else:
        torch.save({"something": torch.zeros(2)}, ckpt)
    refused(capsys, ["train", "--images", files["image"], "--labels", files["truth"], "--out", out, "--resume",
                     "--epochs", "1", "--quiet", "--tile-size", "32", "--device", "cpu"],
            [ckpt, files["image"]], finals=[out], expect=[ckpt.name, "without --resume"])
    assert not marker.exists()


# ------------------------------------------------------------------------ refine alignment (item 6)

@pytest.mark.parametrize("shift,crs,expect", [((200, 0), None, "transform"), ((0, 0), "EPSG:4326", "CRS")])
def test_refine_refuses_labels_that_do_not_line_up(files, tmp_path, capsys, shift, crs, expect):
    with rasterio.open(files["labels"]) as ds:
        data = ds.read(1)
    other = write_geotiff(tmp_path / "other.tif", data, nodata=255,
                          transform=TRANSFORM * Affine.translation(*shift), **({"crs": crs} if crs else {}))
    refused(capsys, ["refine", files["image"], other, "--out", tmp_path / "r.tif", "--quiet"],
            [other, files["image"]], finals=[tmp_path / "r.tif"], expect=[expect, "the image"])


# ------------------------------------------------------------------- full and read-only disks (7, 8)

@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", readonly: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not permitted'}); "
                    "the full and read-only disk cases need one")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_evaluate_on_a_full_disk_leaves_no_report_file(files, tmp_path, capsys):
    with tmpfs(tmp_path / "full", size="24k") as full:
        refused(capsys, ["evaluate", files["labels"], files["truth"], "--out", full, "--quiet"],
                [files["labels"], files["truth"]], expect=["cannot write the report"])
        assert not any(full.iterdir()), list(full.iterdir())


def test_vectorize_to_full_and_read_only_disks(files, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        refused(capsys, ["vectorize", files["labels"], "--out", ro / "p.gpkg", "--quiet"], [files["labels"]],
                expect=[str(ro)])
    with tmpfs(tmp_path / "full", size="64k") as full:
        st = os.statvfs(full)
        (full / "filler").write_bytes(b"x" * (st.f_bavail * st.f_frsize - 512))  # 512 bytes left
        refused(capsys, ["vectorize", files["labels"], "--out", full / "p.geojson", "--quiet"],
                [files["labels"]], finals=[full / "p.geojson"], expect=["p.geojson"])
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_predict_vector_into_a_read_only_folder_fails_before_computing(files, tmp_path, capsys):
    out = tmp_path / "out"
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        refused(capsys, ["predict", files["image"], "--model", files["bundle"], "--out", out,
                         "--vector", ro / "p.gpkg", "--quiet"], [files["image"]],
                finals=[out / "labels.tif", out / "preview.png", out / "run.json"], expect=["not writable"])


# ------------------------------------------------------------------------------- small rasters (9)

@pytest.mark.parametrize("size", [1, 30])
def test_a_raster_smaller_than_the_tile_predicts(files, tmp_path, capsys, size):
    image, _ = scene_arrays(96)
    small = write_geotiff(tmp_path / "small.tif", image[:, :size, : size + 3])
    assert main(["predict", str(small), "--model", str(files["bundle"]), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    with rasterio.open(tmp_path / "o" / "labels.tif") as ds:
        labels = ds.read(1)
    assert labels.shape == (size, size + 3) and (labels < 6).all()

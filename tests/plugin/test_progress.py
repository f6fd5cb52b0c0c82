"""Progress the activity dock shows: it moves with the work, reaches the end only at the end."""

from __future__ import annotations

import numpy as np
from segdeep.classes import DUBAI_CLASSES

from napari_segdeep import _scoring
from napari_segdeep._layers import labels_layer_kwargs


def test_evaluate_progress_counts_strips_and_report(make_napari_viewer, wait_job, progress_log, tmp_path,
                                                    monkeypatch):
    monkeypatch.setattr(_scoring, "ROWS_PER_STEP", 50)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (400, 120)).astype(np.uint8)
    pred = truth.copy()
    pred[:100] = 1
    viewer = make_napari_viewer()
    viewer.add_labels(truth, **labels_layer_kwargs(DUBAI_CLASSES, {}, "truth"))
    viewer.add_labels(pred, **labels_layer_kwargs(DUBAI_CLASSES, {"bundle": "m.safetensors"}, "pred"))
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Evaluate")
    w.out_dir.setText(str(tmp_path / "reports"))
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    (desc, values), = progress_log
    assert desc == "Evaluate pred"
    steps = 1 + 400 // 50 + 1 + 1  # reference, 8 strips, report files, picture
    done = [n for n, _ in values]
    assert all(t == steps for _, t in values) and done == sorted(done) and done[-1] == steps
    assert len(set(done)) >= 3  # it moves in steps (events that come while the bar repaints are merged)


def test_segment_progress_with_crf_is_not_full_before_the_crf(make_napari_viewer, tiny_bundle, scene, wait_job,
                                                             progress_log):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", "Segment")
    w.set_bundle(tiny_bundle)
    viewer.open(str(scene[0]), plugin="napari-segdeep")
    w.image.set_layer("scene")
    w.crf.setChecked(True)
    w.crf_iterations.setValue(2)
    w.run_button.click()
    wait_job(w)
    assert w.last_outcome.state == "done", w.last_outcome.message
    (_, values), = progress_log
    total = values[-1][1]
    assert values[-1] == (total, total)
    done = [n for n, _ in values]
    before_crf = [n for n in done if n < total]
    assert done == sorted(done) and before_crf and max(before_crf) <= total // 2  # tiles: half; CRF blocks: rest
    assert all(t == total for _, t in values[1:])

"""Scores (core/metrics.py): hand-computed matrices, scikit-learn as an independent oracle,
streaming equals all-at-once, absent-class rules, ignore index, valid mask, bad labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    jaccard_score,
    precision_recall_fscore_support,
)


def _cm(truth, pred, k, **kw) -> ConfusionMatrix:
    cm = ConfusionMatrix(k, **kw)
    cm.update(np.asarray(truth, dtype=np.uint8), np.asarray(pred, dtype=np.uint8))
    return cm


def test_hand_computed_three_classes():
    truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    pred = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    cm = _cm(truth, pred, 3)
    # n_ij: truth 0 -> pred 0 three times, pred 1 once; truth 1 -> 1 twice, 2 once; truth 2 -> 2 twice, 0 once
    assert cm.matrix.tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    s = scores(cm, ["a", "b", "c"])
    # t = [4, 3, 3], p = [4, 3, 3], n_ii = [3, 2, 2], total 10
    assert s["pixel_accuracy"] == pytest.approx(7 / 10)
    # mean accuracy = (3/4 + 2/3 + 2/3) / 3 = 25/36
    assert s["mean_accuracy"] == pytest.approx(25 / 36)
    # IoU = n_ii / (t_i + p_i - n_ii) = 3/5, 2/4, 2/4 -> mean 8/15
    assert [c["iou"] for c in s["classes"]] == pytest.approx([0.6, 0.5, 0.5])
    assert s["mean_iou"] == pytest.approx(8 / 15)
    # FW IU = (4 * 3/5 + 3 * 1/2 + 3 * 1/2) / 10 = 5.4 / 10
    assert s["frequency_weighted_iou"] == pytest.approx(0.54)
    assert [c["precision"] for c in s["classes"]] == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    # F1 = 2 n_ii / (t_i + p_i) = 6/8, 4/6, 4/6
    assert [c["f1"] for c in s["classes"]] == pytest.approx([0.75, 4 / 6, 4 / 6])
    assert [c["support"] for c in s["classes"]] == [4, 3, 3]
    assert [c["predicted"] for c in s["classes"]] == [4, 3, 3]
    assert [c["name"] for c in s["classes"]] == ["a", "b", "c"]
    assert s["num_pixels"] == 10 and s["ignored_pixels"] == 0


def test_absent_and_prediction_only_classes():
    # 4 classes: class 2 is in neither truth nor prediction; class 3 only in the prediction.
    cm = _cm([0, 0, 1, 1, 1], [0, 3, 1, 1, 0], 4)
    assert cm.matrix.tolist() == [[1, 0, 0, 1], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    s = scores(cm)
    c = s["classes"]
    # t = [2, 3, 0, 0], p = [2, 2, 0, 1], n_ii = [1, 2, 0, 0]
    assert c[2]["absent"] is True
    assert all(c[2][key] is None for key in ("iou", "accuracy", "precision", "f1"))
    assert c[3]["absent"] is False
    assert c[3]["iou"] == 0.0 and c[3]["accuracy"] is None
    assert c[3]["precision"] == 0.0 and c[3]["f1"] == 0.0
    # mean IU over classes 0, 1, 3 (2 is absent): (1/3 + 2/3 + 0) / 3
    assert s["mean_iou"] == pytest.approx(1 / 3)
    assert s["classes_in_mean_iou"] == 3
    # mean accuracy over classes with truth (0, 1): (1/2 + 2/3) / 2
    assert s["mean_accuracy"] == pytest.approx(7 / 12)
    assert s["classes_in_mean_accuracy"] == 2
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)
    # FW IU = (2 * 1/3 + 3 * 2/3) / 5
    assert s["frequency_weighted_iou"] == pytest.approx(8 / 15)
    assert c[0]["name"] == "class 0"


def test_class_never_predicted_has_no_precision_and_zero_f1():
    s = scores(_cm([0, 0, 1, 1], [0, 0, 0, 0], 2))
    c1 = s["classes"][1]
    assert c1["precision"] is None and c1["accuracy"] == 0.0 and c1["iou"] == 0.0 and c1["f1"] == 0.0


def test_against_scikit_learn_on_random_labels():
    rng = np.random.default_rng(42)
    k = 5
    truth = rng.integers(0, k, 4000).astype(np.uint8)
    # A prediction that is right 60 % of the time, with class-dependent errors.
    pred = np.where(rng.random(4000) < 0.6, truth, rng.integers(0, k, 4000)).astype(np.uint8)
    truth[rng.random(4000) < 0.05] = 255  # ignore index
    keep = truth != 255
    cm = ConfusionMatrix(k)
    cm.update(truth, pred)
    t, p = truth[keep], pred[keep]
    labels = list(range(k))
    np.testing.assert_array_equal(cm.matrix, confusion_matrix(t, p, labels=labels))
    s = scores(cm)
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    jac = jaccard_score(t, p, labels=labels, average=None)
    c = s["classes"]
    assert [x["iou"] for x in c] == pytest.approx(jac.tolist())
    assert [x["accuracy"] for x in c] == pytest.approx(rec.tolist())
    assert [x["precision"] for x in c] == pytest.approx(prec.tolist())
    assert [x["f1"] for x in c] == pytest.approx(f1.tolist())
    assert [x["support"] for x in c] == sup.tolist()
    assert s["pixel_accuracy"] == pytest.approx(accuracy_score(t, p))
    assert s["mean_iou"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"))
    assert s["mean_accuracy"] == pytest.approx(rec.mean())
    # Frequency-weighted IU is the support-weighted Jaccard index.
    assert s["frequency_weighted_iou"] == pytest.approx(
        jaccard_score(t, p, labels=labels, average="weighted")
    )
    assert s["ignored_pixels"] == int((~keep).sum())


def test_prediction_only_class_matches_scikit_learn_iou_zero():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 500).astype(np.uint8)  # classes 0-2 in truth
    pred = rng.integers(0, 4, 500).astype(np.uint8)  # class 3 predicted but never true
    s = scores(_cm(truth, pred, 4))
    jac = jaccard_score(truth, pred, labels=[0, 1, 2, 3], average=None, zero_division=0)
    assert [c["iou"] for c in s["classes"]] == pytest.approx(jac.tolist())
    assert s["mean_iou"] == pytest.approx(jac.mean())  # class 3 (IoU 0) counts in the mean
    assert s["mean_accuracy"] == pytest.approx(
        np.mean([c["accuracy"] for c in s["classes"][:3]])
    )


def test_streaming_in_blocks_equals_all_at_once():
    rng = np.random.default_rng(7)
    h, w, k = 97, 131, 6
    truth = rng.integers(0, k, (h, w)).astype(np.uint8)
    pred = rng.integers(0, k, (h, w)).astype(np.uint8)
    truth[rng.random((h, w)) < 0.1] = 255
    pred[rng.random((h, w)) < 0.05] = 255
    valid = rng.random((h, w)) > 0.1
    whole = ConfusionMatrix(k)
    whole.update(truth, pred, valid)
    # Irregular blocks, split over two "workers" merged at the end, in a shuffled order.
    blocks = [(r, c) for r in range(0, h, 40) for c in range(0, w, 33)]
    rng.shuffle(blocks)
    workers = [ConfusionMatrix(k), ConfusionMatrix(k)]
    for n, (r, c) in enumerate(blocks):
        sl = np.s_[r : r + 40, c : c + 33]
        workers[n % 2].update(truth[sl], pred[sl], valid[sl])
    merged = workers[0] + workers[1]
    np.testing.assert_array_equal(merged.matrix, whole.matrix)
    assert merged.ignored_by_reason == whole.ignored_by_reason
    assert merged.ignored_pixels + merged.num_pixels == h * w
    assert scores(merged) == scores(whole)
    # `+` leaves its operands alone; merge() adds in place.
    assert workers[0].num_pixels + workers[1].num_pixels == whole.num_pixels
    assert workers[0].merge(workers[1]).num_pixels == whole.num_pixels


def test_ignore_index_valid_mask_and_prediction_nodata_are_excluded():
    truth = np.array([[0, 1, 2, 255], [1, 1, 2, 0]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 0], [255, 1, 2, 2]], dtype=np.uint8)
    valid = np.array([[True, True, True, True], [True, True, True, False]])
    cm = ConfusionMatrix(3, ignore_index=2)
    cm.update(truth, pred, valid)
    # Scored: (0,0) (1,1) | (1,1); truth 2 (ignore) x2, truth 255 x1, pred 255 x1, invalid x1.
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 0]]
    assert cm.ignored_by_reason == {"invalid": 1, "truth_ignored": 3, "prediction_nodata": 1}
    assert cm.ignored_pixels == 5 and cm.num_pixels == 3
    s = scores(cm)
    assert s["ignored_pixels"] == 5 and s["num_pixels"] == 3


def test_wide_dtype_labels_with_negative_ignore_index():
    truth = np.array([0, 1, -1, 1], dtype=np.int32)
    pred = np.array([0, 1, 1, 0], dtype=np.int64)
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(truth, pred)
    assert cm.matrix.tolist() == [[1, 0], [1, 1]]
    assert cm.ignored_pixels == 1


def test_labels_outside_the_palette_are_a_clear_error():
    cm = ConfusionMatrix(3)
    with pytest.raises(SegdeepError, match="truth labels contain class 7 but there are 3 classes"):
        cm.update(np.array([0, 7], np.uint8), np.array([0, 1], np.uint8))
    with pytest.raises(SegdeepError, match="prediction labels contain class 4"):
        cm.update(np.array([0, 1], np.uint8), np.array([0, 4], np.uint8))
    with pytest.raises(SegdeepError, match="value 300"):
        cm.update(np.array([0, 300]), np.array([0, 1]))
    with pytest.raises(SegdeepError):  # a failed update adds nothing, not even its ignored pixels
        cm.update(np.array([255, 9], np.uint8), np.array([0, 1], np.uint8), np.array([True, True]))
    assert cm.num_pixels == 0 and cm.ignored_pixels == 0
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(TypeError, match="integers"):
        cm.update(np.zeros(2, np.float32), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="cannot merge"):
        cm.merge(ConfusionMatrix(4))


def test_nothing_scored_is_an_error_not_a_report_of_zeros():
    cm = ConfusionMatrix(3)
    cm.update(np.full(4, 255, np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(SegdeepError, match="nothing to score.*4 pixels"):
        scores(cm)


def test_scores_of_a_plain_matrix_with_a_palette_are_json_ready():
    m = np.array([[5, 1, 0, 0, 0, 0]] + [[0] * 6] * 5, dtype=np.int64)
    m[1, 1] = 3
    s = scores(m, DUBAI_CLASSES, ignored_pixels=12)
    assert [c["name"] for c in s["classes"]][:3] == ["building", "land", "road"]
    assert s["ignored_pixels"] == 12 and "ignored_by_reason" not in s
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        assert type(s[key]) is float
    assert type(s["num_pixels"]) is int and type(s["confusion_matrix"][0][0]) is int
    assert all(type(c["support"]) is int for c in s["classes"])
    with pytest.raises(ValueError, match="3 class names"):
        scores(m, ["a", "b", "c"])
    with pytest.raises(ValueError, match="square"):
        scores(np.zeros((2, 3), np.int64))


def test_internal_chunking_does_not_change_counts(monkeypatch):
    import segdeep.evaluate.metrics as metrics

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, (37, 23)).astype(np.uint8)
    pred = rng.integers(0, 4, (37, 23)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.1] = 255
    valid = rng.random(truth.shape) > 0.2
    whole = ConfusionMatrix(4)
    whole.update(truth, pred, valid)
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 100)  # 851 pixels -> 9 chunks, the last partial
    chunked = ConfusionMatrix(4)
    chunked.update(truth, pred, valid)
    np.testing.assert_array_equal(chunked.matrix, whole.matrix)
    assert chunked.ignored_by_reason == whole.ignored_by_reason
    keep = valid & (truth != 255)
    np.testing.assert_array_equal(whole.matrix, confusion_matrix(truth[keep], pred[keep], labels=range(4)))

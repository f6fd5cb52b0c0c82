"""Report files (core/report.py): the report.json contract, CSV rows, Markdown, self-contained
HTML, plots in class colours, schema validation, and no partial files on failure."""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from segdeep.classes import DUBAI_CLASSES
from segdeep.errors import SegdeepError
from segdeep.evaluate.metrics import ConfusionMatrix, scores
from segdeep.evaluate.report import validate_report_json, write_report

FILES = {"report.json", "report.csv", "report.md", "report.html", "confusion.png", "per_class_iou.png"}


@pytest.fixture(scope="module")
def result() -> dict:
    """Six Dubai classes; 'water' (4) only in the prediction, some nodata and ignored pixels."""
    rng = np.random.default_rng(3)
    truth = rng.choice([0, 1, 2, 3, 5], size=(60, 80)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.75, truth, rng.integers(0, 6, truth.shape))
    pred = pred.astype(np.uint8)
    truth[:2] = 255
    pred[-1, :10] = 255
    cm = ConfusionMatrix(6)
    cm.update(truth, pred)
    return scores(cm, DUBAI_CLASSES)


@pytest.fixture(scope="module")
def written(result, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    paths = write_report(result, out, title="Dubai tile 7", notes=["Model: test."],
                         classes=DUBAI_CLASSES, inputs={"prediction": "pred.tif", "reference": "t.tif"})
    return paths


def test_all_files_written_under_their_final_names_only(written):
    out = written["json"].parent
    assert {p.name for p in written.values()} == FILES
    assert set(written) == {"json", "csv", "markdown", "html", "confusion", "per_class_iou"}
    assert {p.name for p in out.iterdir()} == FILES  # no temporary files left behind
    assert all(p.stat().st_size > 0 for p in written.values())


def test_json_matches_schema_and_round_trips_the_scores(written, result):
    data = json.loads(written["json"].read_text())
    validate_report_json(data)
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou",
                "num_pixels", "ignored_pixels", "confusion_matrix"):
        assert data[key] == result[key], key
    for got, want in zip(data["classes"], result["classes"], strict=True):
        for key in ("index", "name", "iou", "accuracy", "precision", "f1", "support", "predicted"):
            assert got[key] == want[key]
    water = data["classes"][4]
    assert water["support"] == 0 and water["iou"] == 0.0 and water["accuracy"] is None
    assert data["classes"][0]["color"] == "#3C1098"
    assert data["inputs"] == {"prediction": "pred.tif", "reference": "t.tif"}
    assert any("'water' has no reference pixels" in n for n in data["notes"])
    assert data["notes"][-1] == "Model: test."


def test_csv_has_one_row_per_class(written, result):
    with written["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [c.name for c in DUBAI_CLASSES]
    for row, c in zip(rows, result["classes"], strict=True):
        assert int(row["index"]) == c["index"] and int(row["support"]) == c["support"]
        assert int(row["predicted"]) == c["predicted"]
        assert float(row["iou"]) == pytest.approx(c["iou"], abs=1e-6)
    assert rows[4]["accuracy"] == ""  # undefined recall is an empty cell, not 0 or nan
    assert rows[2]["color"] == "#6EC1E4" and rows[0]["absent"] == "false"


def test_markdown_states_scores_notes_and_links_plots(written, result):
    md = written["markdown"].read_text()
    assert md.startswith("# Dubai tile 7\n")
    assert f"| Mean IoU | {100 * result['mean_iou']:.1f}% |" in md
    assert "| 4 | water | 0.0% | – |" in md  # no recall for a class without reference pixels
    assert "](confusion.png)" in md and "](per_class_iou.png)" in md
    assert "recall undefined (left out of mean accuracy)" in md
    assert "`pred.tif`" in md


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "srcset", "data") and v]


def test_html_is_self_contained(written):
    text = written["html"].read_text()
    parser = _Refs()
    parser.feed(text)
    assert parser.refs and all(r.startswith("data:image/png;base64,") for r in parser.refs)
    assert "link" not in parser.tags and "script" not in parser.tags
    assert not re.search(r"https?://|url\(|@import", text)
    for ref in parser.refs:  # embedded images are real PNGs
        Image.open(BytesIO(base64.b64decode(ref.split(",", 1)[1]))).verify()
    assert "vegetation" in text and "background:#FEDD3A" in text  # class colour swatch


def test_iou_bars_drawn_in_class_colours(written):
    img = np.asarray(Image.open(written["per_class_iou"]).convert("RGB")).reshape(-1, 3)
    for c in DUBAI_CLASSES[:4]:  # classes with a bar (water's IoU is 0: no bar)
        assert (img == c.color).all(axis=1).sum() > 200, c.name
    cm = Image.open(written["confusion"])
    assert cm.format == "PNG" and min(cm.size) >= 600


def test_validate_report_json_names_each_problem(result):
    good = json.loads(json.dumps(result))
    validate_report_json(dict(good, extra="fine"))
    cases = [
        (lambda d: d.pop("mean_iou"), "mean_iou must be a number"),
        (lambda d: d.update(pixel_accuracy=math.nan), "pixel_accuracy must be a number"),
        (lambda d: d.update(num_pixels=True), "num_pixels must be a non-negative integer"),
        (lambda d: d["classes"][1].update(iou="0.5"), r"classes\[1\].iou"),
        (lambda d: d["classes"][2].update(index=7), r"classes\[2\].index must be 2"),
        (lambda d: d["classes"][0].update(support=1), "row sums differ"),
        (lambda d: d["confusion_matrix"].pop(), "confusion_matrix must be 6 x 6"),
        (lambda d: d.update(num_pixels=d["num_pixels"] + 1), "total differs from num_pixels"),
    ]
    for mutate, message in cases:
        bad = json.loads(json.dumps(result))
        mutate(bad)
        with pytest.raises(ValueError, match=message):
            validate_report_json(bad)
    with pytest.raises(ValueError, match="JSON object"):
        validate_report_json([])


def test_bad_result_or_folder_writes_nothing(result, tmp_path):
    bad = dict(result, mean_iou=None)
    with pytest.raises(ValueError, match="mean_iou"):
        write_report(bad, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SegdeepError, match="cannot create the report folder"):
        write_report(result, tmp_path / "file")


def test_failure_midway_leaves_no_partial_files_and_no_json(result, tmp_path, monkeypatch):
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("report.html"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(SegdeepError, match=r"report\.html: cannot write the report \(No space"):
        write_report(result, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "report.json" not in names and "report.html" not in names
    assert not [n for n in names if n.startswith(".")]  # temporary files removed


def test_report_without_palette_and_with_absent_class(tmp_path):
    m = np.array([[4, 1, 0], [2, 3, 0], [0, 0, 0]], dtype=np.int64)
    res = scores(m, ["a", "b", "c"], ignored_pixels=0)
    paths = write_report(res, tmp_path)
    data = json.loads(paths["json"].read_text())
    validate_report_json(data)
    assert data["classes"][2]["absent"] is True and data["classes"][2]["iou"] is None
    assert "'c' is absent from both" in paths["markdown"].read_text()
    assert "color" not in data["classes"][0]


def test_reports_use_agg_without_pyplot_or_qt(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from segdeep.evaluate.metrics import scores\nfrom segdeep.evaluate.report import write_report\n"
        f"write_report(scores(np.array([[3, 1], [0, 2]])), {str(tmp_path)!r})\n"
        "bad = [m for m in sys.modules if m == 'matplotlib.pyplot' or m.startswith(('PyQt', 'PySide', 'qtpy'))]\n"
        "assert not bad, bad\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert (tmp_path / "report.json").exists()

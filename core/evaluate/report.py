"""Accuracy report files: JSON (the contract other tools read), CSV, Markdown, HTML and two plots.

:func:`write_report` takes the dict returned by :func:`segdeep.evaluate.metrics.scores` and writes into a
folder: ``report.json``, ``report.csv`` (one row per class), ``report.md``, ``report.html`` (one
self-contained file, plots embedded), ``confusion.png`` (row-normalised) and ``per_class_iou.png``.
Each file is written under a temporary name and renamed when complete; ``report.json`` is written
last, so its presence means the report is whole. Plots use matplotlib's Agg canvas directly (no
pyplot, no GUI backend, no global state), so reports can be made from worker threads.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..classes import ClassInfo
from ..errors import SegdeepError
from ..io.atomic import temp_path

SCORE_KEYS = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")
SCORE_LABELS = {"pixel_accuracy": "Pixel accuracy", "mean_accuracy": "Mean accuracy (mean recall)",
                "mean_iou": "Mean IoU", "frequency_weighted_iou": "Frequency-weighted IoU"}
CLASS_FLOAT_KEYS = ("iou", "accuracy", "precision", "f1")
CLASS_COLUMNS = ("IoU", "Recall", "Precision", "F1 (Dice)", "Reference px", "Predicted px",
                 "Share of reference")
DEFINITIONS = (  # shown at the end of report.md and report.html
    "Scores follow Long et al. (FCN, section 5). n_ij = pixels of reference class i predicted as class "
    "j, t_i = sum_j n_ij (reference pixels), p_i = sum_j n_ji (predicted pixels).",
    "Pixel accuracy = sum_i n_ii / sum_i t_i. Recall (class accuracy) = n_ii / t_i; precision = "
    "n_ii / p_i; IoU = n_ii / (t_i + p_i - n_ii); F1 (Dice) = 2 n_ii / (t_i + p_i).",
    "Mean accuracy averages recall over classes with reference pixels. Mean IoU averages IoU over "
    "classes present in the reference or the prediction (a class predicted but absent from the "
    "reference has IoU 0 and counts). Frequency-weighted IoU weights each IoU by t_i.",
    "Pixels that are nodata, outside the valid area or labelled with the ignore index in the "
    "reference, and pixels without a prediction, are not scored.")


def validate_report_json(data) -> None:
    """Check a report (the parsed ``report.json``) against the schema; raise ``ValueError`` naming
    every problem. Extra keys are allowed. Also checks that the confusion matrix agrees with the
    per-class support and predicted counts and with ``num_pixels``."""
    errors: list[str] = []

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(data, dict):
        raise ValueError(f"report must be a JSON object, got {type(data).__name__}")
    for key in SCORE_KEYS:
        if not (number(data.get(key)) and 0.0 <= data[key] <= 1.0):
            errors.append(f"{key} must be a number in 0-1, got {data.get(key)!r}")
    for key in ("num_pixels", "ignored_pixels"):
        if not count(data.get(key)):
            errors.append(f"{key} must be a non-negative integer, got {data.get(key)!r}")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        errors.append("classes must be a non-empty list")
        classes = []
    for i, c in enumerate(classes):
        if not isinstance(c, dict):
            errors.append(f"classes[{i}] must be an object")
            continue
        if c.get("index") != i or isinstance(c.get("index"), bool):
            errors.append(f"classes[{i}].index must be {i} (its matrix row), got {c.get('index')!r}")
        if not isinstance(c.get("name"), str):
            errors.append(f"classes[{i}].name must be a string")
        for key in CLASS_FLOAT_KEYS:
            v = c.get(key, "missing")
            if v is not None and not (number(v) and 0.0 <= v <= 1.0):
                errors.append(f"classes[{i}].{key} must be a number in 0-1 or null, got {v!r}")
        for key in ("support", "predicted"):
            if not count(c.get(key)):
                errors.append(f"classes[{i}].{key} must be a non-negative integer")
    m = data.get("confusion_matrix")
    k = len(classes)
    if not (isinstance(m, list) and len(m) == k
            and all(isinstance(r, list) and len(r) == k and all(map(count, r)) for r in m)):
        errors.append(f"confusion_matrix must be {k} x {k} non-negative integers "
                      "(rows = reference, columns = prediction)")
    elif not errors:
        a = np.array(m, dtype=np.int64).reshape(k, k)
        if a.sum(axis=1).tolist() != [c["support"] for c in classes]:
            errors.append("confusion_matrix row sums differ from the classes' support")
        if a.sum(axis=0).tolist() != [c["predicted"] for c in classes]:
            errors.append("confusion_matrix column sums differ from the classes' predicted counts")
        if int(a.sum()) != data["num_pixels"]:
            errors.append("confusion_matrix total differs from num_pixels")
    if errors:
        raise ValueError("report does not match the report.json schema: " + "; ".join(errors))


def report_notes(result: dict, notes: Sequence[str] = ()) -> list[str]:
    """Plain-language notes on what the scores leave out, followed by the caller's ``notes``."""
    out = []
    total = result["num_pixels"] + result["ignored_pixels"]
    if result["ignored_pixels"]:
        parts = {"invalid": "nodata or outside the valid area",
                 "truth_ignored": "ignore index or nodata in the reference",
                 "prediction_nodata": "without a prediction where the reference has a class"}
        detail = ", ".join(f"{_int(n)} {parts.get(r, r)}"
                           for r, n in result.get("ignored_by_reason", {}).items() if n)
        out.append(f"{_int(result['ignored_pixels'])} of {_int(total)} pixels "
                   f"({result['ignored_pixels'] / total:.1%}) were not scored"
                   + (f": {detail}." if detail else "."))
    for c in result["classes"]:
        if c.get("absent", c["support"] == 0 and c["predicted"] == 0):
            out.append(f"Class '{c['name']}' is absent from both the reference and the prediction: "
                       "it has no scores and is left out of every mean.")
        elif c["support"] == 0:
            out.append(f"Class '{c['name']}' has no reference pixels but {_int(c['predicted'])} "
                       "predicted: IoU 0 (counted in mean IoU), recall undefined (left out of "
                       "mean accuracy).")
        elif c["predicted"] == 0:
            out.append(f"Class '{c['name']}' was never predicted: precision undefined, IoU 0.")
    return out + [str(n) for n in notes]


def _int(n: int) -> str:
    return f"{int(n):,}"


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100.0 * x:.{digits}f}%"


def _class_rows(result: dict) -> list[list[str]]:
    total = result["num_pixels"]
    return [[_pct(c["iou"]), _pct(c["accuracy"]), _pct(c["precision"]), _pct(c["f1"]),
             _int(c["support"]), _int(c["predicted"]),
             "<0.1%" if 0 < c["support"] < total / 1000 else _pct(c["support"] / total)]
            for c in result["classes"]]


def _summary_rows(result: dict) -> list[tuple[str, str]]:
    rows = [(SCORE_LABELS[k], _pct(result[k])) for k in SCORE_KEYS]
    ignored, total = result["ignored_pixels"], result["num_pixels"] + result["ignored_pixels"]
    in_mean = sum(c["iou"] is not None for c in result["classes"])
    return rows + [("Pixels scored", _int(result["num_pixels"])),
                   ("Pixels not scored", f"{_int(ignored)} ({ignored / total:.1%})"),
                   ("Classes in mean IoU", f"{in_mean} of {len(result['classes'])}")]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def confusion_png(result: dict, title: str = "Confusion matrix") -> bytes:
    """Row-normalised confusion matrix (share of each reference class, %) as PNG bytes."""
    import matplotlib as mpl

    m = np.array(result["confusion_matrix"], dtype=np.float64)
    k = m.shape[0]
    rows = m.sum(axis=1, keepdims=True)
    share = np.ma.masked_invalid(np.divide(m, rows, out=np.full_like(m, np.nan), where=rows > 0))
    size = min(max(4.0 + 0.45 * k, 6.0), 13.5)
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    cmap = mpl.colormaps["Blues"].with_extremes(bad="#e6e6e6")
    im = ax.imshow(100 * share, cmap=cmap, vmin=0, vmax=100)
    font = max(7.0, min(10.0, 120.0 / k))
    for i in range(k):
        for j in range(k):
            v = share[i, j]
            if v is not np.ma.masked and m[i, j] > 0:
                digits = 0 if k > 10 or v >= 0.995 else 1
                text = f"{100 * v:.{digits}f}" if v >= 0.5 * 10.0**-(digits + 2) else "<" + (
                    "1" if digits == 0 else "0.1")
                ax.text(j, i, text, ha="center", va="center", fontsize=font,
                        color="white" if v > 0.6 else "#1a1a1a")
        if rows[i, 0] == 0:
            ax.text((k - 1) / 2, i, "no reference pixels", ha="center", va="center",
                    fontsize=font, color="#777777", style="italic")
    names = [c["name"] for c in result["classes"]]
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=font + 1)
    ax.set_yticks(range(k), names, fontsize=font + 1)
    ax.set(xlabel="Predicted class", ylabel="Reference class")
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"{title}\n(% of each reference class; rows sum to 100)", fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.8, label="% of reference pixels")
    return _png(fig)


def per_class_iou_png(result: dict, colors: Sequence[str | None] = ()) -> bytes:
    """Horizontal bar chart of per-class IoU (%) with the mean IoU marked, as PNG bytes."""
    cls, k = result["classes"], len(result["classes"])
    fig = _figure(8.0, 1.2 + 0.42 * k)
    ax = fig.add_subplot()
    y = np.arange(k)
    values = [100 * (c["iou"] or 0.0) for c in cls]
    bar_colors = [col or "#4C72B0" for col in list(colors) or [None] * k]
    ax.barh(y, values, color=bar_colors, edgecolor="#333333", linewidth=0.6, height=0.7)
    for i, c in enumerate(cls):
        label = "absent" if c["iou"] is None else f"{100 * c['iou']:.1f}%"
        ax.text(values[i] + 1, i, label, va="center", fontsize=9,
                color="#777777" if c["iou"] is None else "#1a1a1a",
                style="italic" if c["iou"] is None else "normal",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
    mean = 100 * result["mean_iou"]
    ax.axvline(mean, color="#c0392b", linestyle="--", linewidth=1.2)
    ax.text(mean, -0.62, f" mean IoU {mean:.1f}%", color="#c0392b", fontsize=9, va="bottom")
    ax.set_yticks(y, [c["name"] for c in cls])
    ax.set(ylim=(k - 0.4, -1.0), xlim=(0, 112), xticks=range(0, 101, 20),
           xlabel="Intersection over union (%)")
    ax.set_title("Per-class IoU", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return _png(fig)


def _csv_text(result: dict, colors: Sequence[str | None]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "name", "color", *CLASS_FLOAT_KEYS, "support", "predicted", "absent"])
    for c, col in zip(result["classes"], colors, strict=True):
        floats = ["" if c[key] is None else f"{c[key]:.6f}" for key in CLASS_FLOAT_KEYS]
        absent = c.get("absent", c["support"] == 0 and c["predicted"] == 0)
        w.writerow([c["index"], c["name"], col or "", *floats, c["support"], c["predicted"],
                    str(bool(absent)).lower()])
    return buf.getvalue()


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    sep = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |"
            for r in (header, sep, *rows)]


def _markdown(result: dict, title: str, created: str, notes: list[str], inputs: dict) -> str:
    md = [f"# {title}", "", f"Created {created} by segdeep {__version__}.", ""]
    if inputs:
        md += _md_table(["Input", "Value"], [(k, f"`{v}`") for k, v in inputs.items()], "ll") + [""]
    md += ["## Overall scores", "", *_md_table(["Score", "Value"], _summary_rows(result), "lr"), ""]
    md += ["## Per-class scores", ""]
    rows = [[str(c["index"]), c["name"], *r]
            for c, r in zip(result["classes"], _class_rows(result), strict=True)]
    md += _md_table(["#", "Class", *CLASS_COLUMNS], rows, "ll" + "r" * len(CLASS_COLUMNS))
    md += ["", "![Per-class IoU](per_class_iou.png)", "", "## Confusion matrix", "",
           "Rows are reference classes, columns predicted classes; counts in pixels.", ""]
    names = [c["name"] for c in result["classes"]]
    rows = [[f"**{n}**", *map(_int, r)] for n, r in zip(names, result["confusion_matrix"], strict=True)]
    md += _md_table(["Reference \\ Predicted", *names], rows, "l" + "r" * len(names))
    md += ["", "![Confusion matrix, row-normalised](confusion.png)", ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## How the scores are computed", ""] + [f"- {d}" for d in DEFINITIONS] + [""]
    return "\n".join(md)


CSS = """body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{padding:.35em .7em;border-bottom:1px solid #e3e3e3;text-align:right}
th{background:#f4f6f8;font-weight:600}td.l,th.l{text-align:left}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:.8em 0}.card{background:#f4f6f8;border-radius:6px;
padding:.7em 1.1em;min-width:10em}.card b{display:block;font-size:1.6em;color:#1f4e79}
.card span{color:#555;font-size:.85em}.sw{display:inline-block;width:.9em;height:.9em;
border:1px solid #555;vertical-align:-.1em;margin-right:.4em}.bar{background:#e9eef3;width:7em;
height:.8em;display:inline-block;vertical-align:middle;margin-right:.4em}.bar i{display:block;
height:100%;background:#1f4e79}tr.absent td{color:#999}img{max-width:100%;height:auto}
.cm td.d{font-weight:700}ul.notes li{margin:.2em 0}footer{color:#888;font-size:.8em;margin-top:2em}"""


def _html(result: dict, title: str, created: str, notes: list[str], inputs: dict,
          colors: Sequence[str | None], pngs: dict[str, bytes]) -> str:
    e = html.escape

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(pngs[name]).decode("ascii")
        return f'<p><img alt="{e(alt)}" src="data:image/png;base64,{data}"></p>'

    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
         f"<h1>{e(title)}</h1>", f'<p class="meta">Created {e(created)} by segdeep {e(__version__)}</p>']
    if inputs:
        h.append("<table>" + "".join(f'<tr><th class="l">{e(k)}</th><td class="l"><code>{e(str(v))}'
                                     "</code></td></tr>" for k, v in inputs.items()) + "</table>")
    h.append('<h2>Overall scores</h2><div class="cards">')
    h += [f"<div class=card><b>{_pct(result[k])}</b><span>{SCORE_LABELS[k]}</span></div>"
          for k in SCORE_KEYS]
    h.append("</div><table>" + "".join(f'<tr><th class="l">{e(a)}</th><td>{e(b)}</td></tr>'
                                      for a, b in _summary_rows(result)[4:]) + "</table>")
    h.append('<h2>Per-class scores</h2><table><tr><th>#</th><th class="l">Class</th>'
             + "".join(f"<th>{e(c)}</th>" for c in CLASS_COLUMNS) + "</tr>")
    for c, row, col in zip(result["classes"], _class_rows(result), colors, strict=True):
        sw = f'<span class="sw" style="background:{col}"></span>' if col else ""
        bar = f'<span class="bar"><i style="width:{100 * (c["iou"] or 0):.1f}%"></i></span>'
        cells = [f"{bar}{row[0]}"] + row[1:]
        cls = ' class="absent"' if c["iou"] is None else ""
        h.append(f"<tr{cls}><td>{c['index']}</td><td class=\"l\">{sw}{e(c['name'])}</td>"
                 + "".join(f"<td>{e(x) if i else x}</td>" for i, x in enumerate(cells)) + "</tr>")
    h.append("</table>" + img("per_class_iou.png", "Per-class IoU"))
    names = [e(c["name"]) for c in result["classes"]]
    h.append("<h2>Confusion matrix</h2><p>Rows are reference classes, columns predicted classes; "
             'counts in pixels.</p><table class="cm"><tr><th class="l">Reference \\ Predicted</th>'
             + "".join(f"<th>{n}</th>" for n in names) + "</tr>")
    for i, (n, r) in enumerate(zip(names, result["confusion_matrix"], strict=True)):
        h.append(f'<tr><th class="l">{n}</th>' + "".join(
            f'<td{" class=d" if i == j else ""}>{_int(v)}</td>' for j, v in enumerate(r)) + "</tr>")
    h.append("</table>" + img("confusion.png", "Confusion matrix, row-normalised"))
    if notes:
        h.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes)
                 + "</ul>")
    h.append("<h2>How the scores are computed</h2><ul>"
             + "".join(f"<li>{e(d)}</li>" for d in DEFINITIONS) + "</ul>")
    h.append(f"<footer>segdeep {e(__version__)} · report.json holds the exact figures</footer>"
             "</body></html>")
    return "\n".join(h)


#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("confusion.png", "per_class_iou.png", "report.csv", "report.md", "report.html", "report.json")


def _write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file under a temporary name in its folder, then rename them all: a failure (a
    full disk, say) leaves none of them under its final name and no temporary file behind."""
    temps: list[tuple[Path, Path]] = []
    done: list[Path] = []
    path = None  # the file being written or renamed when a failure comes
    try:
        for path, data in files:
            tmp = temp_path(path)
            temps.append((tmp, path))
            tmp.write_bytes(data)
        for tmp, path in temps:
            os.replace(tmp, path)
            done.append(path)
    except OSError as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for written in done:
            written.unlink(missing_ok=True)
        raise SegdeepError(f"{path}: cannot write the report ({exc.strerror or exc}); no report file "
                           "was left") from None


def write_report(
    result: dict,
    out_dir: str | Path,
    *,
    title: str = "Segmentation accuracy report",
    notes: Sequence[str] = (),
    classes: Sequence[ClassInfo] | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write the report files for ``result`` (from :func:`segdeep.evaluate.metrics.scores`) into ``out_dir``.

    ``notes``: extra lines for the report's Notes section (after the automatic ones about absent
    classes and unscored pixels). ``classes``: the palette, to colour the bar chart and tables
    (matched by index). ``inputs``: e.g. ``{"prediction": path, "reference": path}``, shown at the
    top and stored in the JSON. Returns ``{"json", "csv", "markdown", "html", "confusion",
    "per_class_iou"}`` -> path. Raises ``ValueError`` if ``result`` does not fit the schema and
    :class:`SegdeepError` if ``out_dir`` cannot be created.
    """
    validate_report_json(result)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegdeepError(f"{out}: cannot create the report folder ({exc.strerror or exc})") from None
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    all_notes = report_notes(result, notes)
    inputs = {str(k): str(v) for k, v in (inputs or {}).items()}
    by_index = {c.index: c.hex for c in classes or ()}  # class colours, matched by index
    colors = [by_index.get(c["index"]) for c in result["classes"]]
    data = dict(result, title=title, notes=all_notes, inputs=inputs, created=created,
                segdeep_version=__version__)
    if any(colors):
        data["classes"] = [dict(c, color=col) if col else dict(c)
                           for c, col in zip(result["classes"], colors, strict=True)]
    pngs = {"confusion.png": confusion_png(result),
            "per_class_iou.png": per_class_iou_png(result, colors)}
    files = [  # report.json last: its presence means a whole report
        ("confusion", "confusion.png", pngs["confusion.png"]),
        ("per_class_iou", "per_class_iou.png", pngs["per_class_iou.png"]),
        ("csv", "report.csv", _csv_text(result, colors)),
        ("markdown", "report.md", _markdown(result, title, created, all_notes, inputs)),
        ("html", "report.html", _html(result, title, created, all_notes, inputs, colors, pngs)),
        ("json", "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n"),
    ]
    _write_all([(out / name, payload.encode("utf-8") if isinstance(payload, str) else payload)
                for _, name, payload in files])
    return {key: out / name for key, name, _ in files}

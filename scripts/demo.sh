#!/usr/bin/env bash
# `make demo`: segment the sample scene with the shipped model + dense CRF, export polygons,
# evaluate against the scene's truth labels, and say where everything is.
set -euo pipefail
out=${1:-demo_out}
seg=.venv/bin/segdeep
scene=sample_data/scene.tif
truth=sample_data/scene_labels.tif
model=sample_data/models/default.safetensors

for f in "$scene" "$truth" "$model"; do
  [ -f "$f" ] || { echo "demo: $f is missing (the repository ships it; is this a full clone?)" >&2; exit 2; }
done
rm -rf "$out"
echo "== segdeep predict: $scene with $(basename "$model") + dense CRF"
$seg predict "$scene" --model "$model" --crf --vector polygons.gpkg --out "$out"
echo
echo "== segdeep evaluate: $out/labels.tif against $truth"
$seg evaluate "$out/labels.tif" "$truth" --classes "$model" --out "$out/report"
.venv/bin/python -c "import json, sys; from segdeep import validate_report_json; validate_report_json(json.load(open(sys.argv[1])))" "$out/report/report.json"
echo
echo "Outputs in $out/:"
echo "  labels.tif        label GeoTIFF (COG, colour table, class names): open it in QGIS"
echo "  polygons.gpkg     polygons per class, styled for QGIS"
echo "  preview.png       the scene with the label overlay and a legend"
echo "  run.json          parameters, model card, device, timings, peak memory"
echo "  report/           report.html, report.md, report.json, report.csv, confusion.png, per_class_iou.png"

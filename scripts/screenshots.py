"""Screenshots of the napari plugin at work, for the README (``make screenshots``, under Xvfb).

Opens the sample scene, runs the Segment widget with the shipped default model, refines the result
with the Refine widget (dense CRF + small-region removal), evaluates it against the scene's truth
with the Evaluate widget, steps to the least certain region (Refine's "Next uncertain region"), and saves a PNG of the whole window after each step into
``docs/screenshots/``. Without the shipped model (``sample_data/models/default.safetensors``) it
says so and stops, unless ``--model`` names another bundle.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait(app, widget, timeout: float = 1800.0) -> None:
    """Let the Qt event loop run until the widget's job has ended."""
    t0 = time.perf_counter()
    while widget.job is None or not widget.job.ended:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"screenshots: {type(widget).__name__} did not finish in {timeout:.0f} s")
    if widget.last_outcome.state != "done":
        raise SystemExit(f"screenshots: {type(widget).__name__} ended with {widget.last_outcome.state}: "
                         f"{widget.last_outcome.message}")


def settle(app, seconds: float = 0.5) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.02)


def show_only(viewer, docks: dict, name: str | None) -> None:
    for key, dock in docks.items():
        dock.setVisible(key == name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model bundle (default: the shipped sample_data/models/default.safetensors)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else REPO / "sample_data" / "models" / "default.safetensors"
    if not model.is_file():
        print(f"screenshots: skipped: no model bundle at {model} (run `make train-default`, or pass --model)")
        return 0
    import napari
    import torch
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="segdeep", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    image, truth = viewer.open_sample("napari-segdeep", "scene")
    truth.visible = False
    docks, widgets = {}, {}
    for name in ("Segment", "Refine", "Evaluate"):
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget("napari-segdeep", name)
    segment, refine, evaluate = (widgets[n] for n in ("Segment", "Refine", "Evaluate"))

    def shot(name: str) -> None:
        settle(app)
        path = out / name
        pixels = viewer.screenshot(canvas_only=False, flash=False)
        # 256 colours: a quarter of the size, no visible difference at screen size
        Image.fromarray(pixels[..., :3]).quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                                  dither=Image.Dither.NONE).save(path, optimize=True)
        print(f"screenshots: wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")

    show_only(viewer, docks, "Segment")
    viewer.reset_view()
    segment.set_bundle(model)
    shot("01_sample_scene.png")

    t0 = time.perf_counter()
    segment.image.set_layer(image.name)
    segment.probabilities.setChecked(True)  # also the uncertainty layer, for 05
    segment.run_button.click()
    wait(app, segment)
    print(f"screenshots: segmented {image.data.shape[1]} x {image.data.shape[0]} px in "
          f"{time.perf_counter() - t0:.1f} s ({segment.device_used.text()})")
    labels = segment.result_layer
    h, w = labels.data.shape
    viewer.cursor.position = tuple(labels.data_to_world((h * 0.4, w * 0.55)))  # the map/class readout
    shot("02_segment.png")

    show_only(viewer, docks, "Refine")
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 2.5  # a closer look; the refinement runs on what is visible
    settle(app)
    refine.labels.set_layer(labels.name)
    refine.build_palette()
    refine.image.set_layer(image.name)
    refine.min_region.setValue(40)
    refine.fill_holes.setValue(40)
    refine.scope.setCurrentText("visible region")
    t0 = time.perf_counter()
    refine.apply_button.click()
    wait(app, refine)
    print(f"screenshots: refined the visible region in {time.perf_counter() - t0:.1f} s ({refine.status.text()})")
    viewer.layers.selection.active = labels
    refine.pick_class(0)
    shot("03_refine.png")
    refine.next_button.click()  # the least certain region, with the uncertainty layer shown
    shot("05_uncertain.png")
    viewer.layers[labels.metadata["uncertainty_layer"]].visible = False
    viewer.reset_view()

    show_only(viewer, docks, "Evaluate")
    evaluate.labels.set_layer(labels.name)
    evaluate.reference.set_layer(truth.name)
    evaluate.out_dir.setText(tempfile.mkdtemp(prefix="segdeep-screenshots-"))
    evaluate.run_button.click()
    wait(app, evaluate)
    r = evaluate.result
    print(f"screenshots: pixel accuracy {r['pixel_accuracy']:.3f}, mean IoU {r['mean_iou']:.3f}")
    shot("04_evaluate.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The five docks fit a 1000 px high screen together; status and errors stay in sight."""

from __future__ import annotations

import pytest

DOCKS = ("Segment", "Refine", "Export", "Evaluate", "Train")


def test_all_docks_fit_a_1000_px_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1000)
    widgets = [viewer.window.add_plugin_dock_widget("napari-segdeep", name)[1] for name in DOCKS]
    qtbot.wait(50)
    heights = {name: w.minimumSizeHint().height() for name, w in zip(DOCKS, widgets, strict=True)}
    assert all(h <= 160 for h in heights.values()), heights
    assert viewer.window._qt_window.minimumSizeHint().height() <= 1000 and viewer.window._qt_window.height() <= 1000
    for name, w in zip(DOCKS, widgets, strict=True):
        assert w.status.parent() is w, name  # pinned under the scroll area, not scrolled away
        assert w.status.isVisible() and w.visibleRegion().contains(w.status.geometry().center()), name


@pytest.mark.parametrize("dock", DOCKS)
def test_an_error_shows_in_the_dock(make_napari_viewer, dock, monkeypatch):
    from napari_segdeep import _workers

    monkeypatch.setattr(_workers, "notify_error", lambda message: None)
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-segdeep", dock)
    button = getattr(w, "run_button", None) or w.apply_button
    w.status.setText("an old line")
    button.click()  # no layers at all: every dock refuses in one line
    assert w.status.text().startswith("error: ") and "\n" not in w.status.text(), w.status.text()

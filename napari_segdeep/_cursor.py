"""Under the cursor: map coordinates (CRS units) and the class name of each visible Labels layer,
shown in the canvas' text overlay (napari's own status bar gives world coordinates and class
numbers). Layers are in map coordinates (see :func:`napari_segdeep._layers.map_affine`)."""

from __future__ import annotations

from ._layers import layer_classes, map_position


def describe_position(viewer, world) -> str:
    """One line for a world position: ``E 300012.25  N 2699987.75 m · scene labels: road``.

    Coordinates are given when a visible layer under the position is georeferenced (its CRS
    units, e.g. metres); class names come from each visible Labels layer's palette."""
    import napari

    parts, crs_unit = [], None
    for layer in reversed(list(viewer.layers)):
        if not layer.visible:
            continue
        meta = layer.metadata or {}
        if crs_unit is None and meta.get("crs") and meta.get("georeferenced", True):
            crs_unit = _unit(meta["crs"])
        if isinstance(layer, napari.layers.Labels):
            value = layer.get_value(world, world=True)
            if value is None:
                continue
            names = {c.index: c.name for c in layer_classes(layer)}
            parts.append(f"{layer.name}: {'nodata' if value == 255 else names.get(int(value), f'class {value}')}")
    if crs_unit is not None:
        east, north = map_position(world)
        parts.insert(0, f"E {east:.2f}  N {north:.2f} {crs_unit}")
    return " · ".join(parts)


def _unit(crs_wkt: str) -> str:
    from rasterio.crs import CRS

    try:
        units = CRS.from_user_input(crs_wkt).linear_units
    except Exception:  # noqa: BLE001 - any unreadable CRS: no unit shown
        return ""
    return {"metre": "m", "meter": "m", "unknown": "°"}.get(units, units)


def show_cursor_readout(viewer) -> None:
    """Keep the canvas' text overlay on the cursor's map position and classes (once per viewer)."""
    emitter = viewer.cursor.events.position
    if any(getattr(cb, "segdeep_readout", False) for cb in list(emitter.callbacks)):
        return

    def update(event=None) -> None:
        text = describe_position(viewer, viewer.cursor.position)
        viewer.text_overlay.text = text
        viewer.text_overlay.visible = bool(text)

    update.segdeep_readout = True
    viewer.text_overlay.position = "bottom_left"
    viewer.text_overlay.font_size = 9
    emitter.connect(update)

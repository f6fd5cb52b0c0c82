"""The generated sample scene, with no torch: a synthetic, georeferenced aerial image of a city
quarter (roads, buildings with shadows, vegetation, water) with its exact six-class label raster,
made by segdeep's own code from a seed. Any window of the (unbounded) scene can be rendered alone
and matches the same window of a larger one.
"""

from .scene import (
           DEFAULT_CRS,
           IMAGE_NAME,
           LABELS_NAME,
           make_sample_scene,
           sample_scene_window,
           write_side_by_side,
)

__all__ = ["DEFAULT_CRS", "IMAGE_NAME", "LABELS_NAME", "make_sample_scene", "sample_scene_window",
           "write_side_by_side"]

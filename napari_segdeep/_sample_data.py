"""napari sample data: segdeep's generated sample scene (image + truth labels).

The committed ``sample_data/scene.tif`` and ``scene_labels.tif`` of the repository are used when
present; otherwise the scene is generated once with :func:`segdeep.sample.scene.make_sample_scene` into
a cache folder (``$SEGDEEP_CACHE`` or ``~/.cache/segdeep``).
"""

from __future__ import annotations

import os
from pathlib import Path

from segdeep.classes import DUBAI_CLASSES
from segdeep.io import open_raster, read_classes_tag, read_labels
from segdeep.sample import IMAGE_NAME, LABELS_NAME, make_sample_scene

from ._layers import georef_metadata, labels_layer_kwargs
from ._reader import read_raster

#: The repository's sample_data folder (present in a source checkout / editable install).
REPO_SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def cache_dir() -> Path:
    """Where generated data and plugin outputs go by default."""
    return Path(os.environ.get("SEGDEEP_CACHE") or Path.home() / ".cache" / "segdeep")


def sample_scene_paths() -> tuple[Path, Path]:
    """(image, labels) of the sample scene, generating it into the cache when not shipped."""
    image, labels = REPO_SAMPLE / IMAGE_NAME, REPO_SAMPLE / LABELS_NAME
    if image.is_file() and labels.is_file():
        return image, labels
    folder = cache_dir() / "sample_scene"
    image, labels = folder / IMAGE_NAME, folder / LABELS_NAME
    if not (image.is_file() and labels.is_file()):
        make_sample_scene(folder)
    return image, labels


def default_bundle() -> Path | None:
    """The shipped default model bundle, when present."""
    path = REPO_SAMPLE / "models" / "default.safetensors"
    return path if path.is_file() else None


def sample_scene() -> list[tuple]:
    """Layer data of the sample scene: the image and its truth labels."""
    image, labels_path = sample_scene_paths()
    layers = read_raster(str(image))
    labels, _ = read_labels(labels_path)
    classes = read_classes_tag(labels_path) or list(DUBAI_CLASSES)
    meta = georef_metadata(open_raster(labels_path, warn=False))
    layers.append((labels, labels_layer_kwargs(classes, meta, "scene truth"), "labels"))
    return layers

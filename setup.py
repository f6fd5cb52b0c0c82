"""Packages for setuptools: the engine lives in core/ and is imported as `segdeep`.

Every sub-package of core/ is found here, so a new one needs no edit (pyproject.toml holds the rest).
"""

from setuptools import find_packages, setup

setup(
    packages=["segdeep", *(f"segdeep.{name}" for name in find_packages("core")),
              *find_packages(include=["napari_segdeep", "napari_segdeep.*"])],
)

"""Packaging: `import segdeep` from a built wheel, the console script, and no Qt in the engine."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari", "superqt", "vispy")


def test_engine_imports_no_gui_modules():
    code = (
        "import sys, pkgutil, importlib, segdeep\n"
        "for m in pkgutil.walk_packages(segdeep.__path__, 'segdeep.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core/ pulled in GUI modules: {out.stdout}"


def test_command_line_help_does_not_import_torch():
    """`segdeep --help` and `segdeep vectorize ...` stay quick: building the parser imports no torch
    (importing torch costs ~2 s and ~0.5 GB here)."""
    code = ("import sys\nfrom segdeep.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"building the CLI parser imported {out.stdout.strip()}"


def test_wheel_installs_and_runs(tmp_path):
    """Build the wheel (every core/**/*.py in it as segdeep/**), install it (no deps) into a folder
    first on the path, import and run it."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(REPO)], check=True, cwd=tmp_path, timeout=300)
    wheel = next(dist.glob("napari_segdeep-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "segdeep/__init__.py" in names and "segdeep/models/registry.py" in names
    # Every module of the engine, sub-packages included (setup.py finds them; nothing is listed).
    sources = sorted(f"segdeep/{p.relative_to(REPO / 'core').as_posix()}" for p in (REPO / "core").rglob("*.py"))
    assert len(sources) > 50 and "segdeep/testing.py" in sources
    assert [s for s in sources if s not in names] == []
    assert "napari_segdeep/napari.yaml" in names
    assert not any(n.startswith("core/") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", "import segdeep; print(segdeep.__file__)"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert out.stdout.strip().startswith(str(target)), out.stdout
    script = target / "bin" / "segdeep"
    assert script.exists(), "console script 'segdeep' is installed"
    help_out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                              env=env, cwd=tmp_path)
    assert help_out.returncode == 0 and "evaluate" in help_out.stdout, help_out.stderr


def test_every_public_name_resolves():
    import segdeep

    missing = []
    for name in segdeep.__all__:
        try:
            getattr(segdeep, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert not missing

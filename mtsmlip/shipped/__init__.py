"""Models shipped inside the package, and finding a model directory by path or name
(light: no torch, so that the command line can use it to print help)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

SHIPPED_DIR = Path(__file__).parent
DEFAULT_MODEL = "water"


def shipped_names() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))


def resolve_model_dir(name_or_path) -> Path:
    """A model directory from a path, or from the name of models shipped inside
    the package (e.g. ``water``, in ``mtsmlip/shipped/water``)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"{path}: --model must be a model directory (from `mtsmlip train`), not a file")
    if str(name_or_path) in shipped_names():
        return SHIPPED_DIR / str(name_or_path)
    raise DataError(f"{name_or_path}: no such model directory, and no shipped models of that name "
                    f"(shipped: {shipped_names() or 'none'})")

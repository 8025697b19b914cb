"""Shared test fixtures: reference data location and the tiny model pair
(builders of every test system: tests/systems.py)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("MTSMLIP_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def water_file() -> Path:
    """The revPBE0-D3 water set. In CI (CI=true) its absence is a failure, not a skip."""
    path = data_dir() / "water-cheng2019" / "water_1593.extxyz.gz"
    if not path.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference data missing in CI: {path} (set MTSMLIP_DATA)")
        pytest.skip(f"reference data not found at {path} (set MTSMLIP_DATA)")
    return path


@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    """The tiny float64 fast/slow/baseline directory, loaded (mtsmlip.load)."""
    import mtsmlip
    from tests.systems import write_tiny_pair

    return mtsmlip.load(write_tiny_pair(tmp_path_factory.mktemp("tiny_pair")))


@pytest.fixture(scope="module")
def md_inputs(tmp_path_factory):
    """(tiny pair directory, small water box file): what the `mtsmlip md` tests run on."""
    import ase.io

    from tests.systems import small_water_box, write_tiny_pair

    root = tmp_path_factory.mktemp("md_inputs")
    ase.io.write(root / "water.extxyz", small_water_box())
    return write_tiny_pair(root / "pair"), root / "water.extxyz"

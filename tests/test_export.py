"""`mtsmlip export`: a model of a pair as a nequip package that nequip's own
ASE calculator loads to the same energy and forces."""

import shutil
import zipfile

import numpy as np
import pytest
import yaml

import mtsmlip
from mtsmlip.cli import main
from mtsmlip.integrations.nequip_package import nequip_calculator
from tests.systems import small_water_box, write_tiny_pair


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_pair(tmp_path_factory.mktemp("tiny"))


def same_as_ours(package, models, part, atoms, atol_eV):
    theirs, ours = atoms.copy(), atoms.copy()
    theirs.calc, ours.calc = nequip_calculator(package), models.calculator(part)
    assert theirs.get_potential_energy() == pytest.approx(ours.get_potential_energy(), abs=atol_eV * len(atoms))
    np.testing.assert_allclose(theirs.get_forces(), ours.get_forces(), atol=atol_eV, rtol=0)
    assert np.abs(ours.get_forces()).max() > 0.1  # forces that could differ


@pytest.mark.parametrize("part", ["fast", "slow", "baseline"])
def test_exported_float64_models_are_the_same_potential(tiny, tmp_path, part):
    package = tmp_path / f"{part}.nequip.zip"
    assert main(["export", "--model", str(tiny), "--part", part, "--to", str(package)]) == 0
    same_as_ours(package, mtsmlip.load(tiny), part, small_water_box(seed=7), atol_eV=1e-9)
    with zipfile.ZipFile(package) as z:  # what nequip's tools read: metadata and the builder config
        names = z.namelist()
        metadata = yaml.safe_load(z.read(next(n for n in names if n.endswith("model/package_metadata.txt"))))
    assert metadata["atom_types"] == {0: "H", 1: "O"} and "eager" in metadata["available_models"]


def test_a_fast_model_with_the_data_gated_wall_exports_with_its_wall(tmp_path):
    from ase import Atoms
    from mtsmlip.models import data_wall

    from tests.systems import TINY_R_MAX_A

    wall = data_wall(["H", "O"], {("H", "H"): 1.4, ("H", "O"): 0.9, ("O", "O"): 2.3}, TINY_R_MAX_A["fast"])
    pair = write_tiny_pair(tmp_path / "walled", fast_wall=wall)
    package = tmp_path / "fast.nequip.zip"
    assert main(["export", "--model", str(pair), "--part", "fast", "--to", str(package)]) == 0
    same_as_ours(package, mtsmlip.load(pair), "fast", small_water_box(seed=7), atol_eV=1e-9)
    dimer = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.5]], cell=np.eye(3) * 20.0)
    dimer.calc = nequip_calculator(package)
    assert dimer.get_potential_energy() > 100.0  # the wall travelled with the model


def test_the_shipped_fast_model_exports_to_float32_precision(tmp_path):
    package = tmp_path / "fast.nequip.zip"
    assert main(["export", "--model", "water", "--part", "fast", "--to", str(package)]) == 0
    same_as_ours(package, mtsmlip.load("water"), "fast", small_water_box(seed=3, n_side=3), atol_eV=1e-4)


def test_bad_exports_are_named_and_write_nothing(tiny, tmp_path, capsys):
    assert main(["export", "--model", str(tiny), "--part", "fast", "--to", str(tmp_path / "fast.zip")]) == 2
    assert "must end in .nequip.zip" in capsys.readouterr().err
    without_baseline = tmp_path / "pair"
    shutil.copytree(tiny, without_baseline)
    (without_baseline / "baseline.pt").unlink()
    assert main(["export", "--model", str(without_baseline), "--part", "baseline", "--to",
                 str(tmp_path / "b.nequip.zip")]) == 2
    assert "has no baseline model" in capsys.readouterr().err
    assert main(["export", "--model", str(tiny), "--part", "total", "--to", str(tmp_path / "t.nequip.zip")]) == 2
    assert "--part" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair"]

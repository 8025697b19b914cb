"""One factory builds the force providers of a model directory for every user:
`md`, `compare`, the stability probe, `serve` and the ASE classes (the
calculators of ``mtsmlip.load(dir)``, which MultiTimeStep integrates)."""

import ase.io
import pytest

import mtsmlip
from mtsmlip import forces
from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.forces import factory
from mtsmlip.md import MultiTimeStep
from tests.systems import small_water_box, write_tiny_pair


@pytest.fixture(scope="module")
def gentle(tmp_path_factory):
    root = tmp_path_factory.mktemp("factory")
    write_tiny_pair(root / "pair", energy_scale=0.02)
    ase.io.write(root / "box.extxyz", small_water_box(seed=4))
    return root / "pair", root / "box.extxyz"


@pytest.fixture
def built(monkeypatch):
    """The names of the models the factory built providers of, in order."""
    names, one_model = [], factory.one_model

    def spy(models, name, *args, **kwargs):
        names.append(name)
        return one_model(models, name, *args, **kwargs)

    monkeypatch.setattr(factory, "one_model", spy)
    return names


def test_md_runs_the_factorys_providers(gentle, built, tmp_path):
    model, structure = gentle
    assert main(["md", "--model", str(model), "--structure", str(structure), "--steps", "2", "--n-inner", "2",
                 "--out", str(tmp_path / "md"), "--no-progress"]) == 0
    assert built == ["fast", "slow"]


def test_compare_runs_the_factorys_providers(gentle, built, tmp_path):
    model, structure = gentle
    assert main(["compare", "--model", str(model), "--structure", str(structure), "--ps", "0.01",
                 "--timestep-fs", "0.25", "--n-inner", "2", "--temperature-K", "50", "--equilibrate-ps", "0.002",
                 "--nve-ps", "0.004", "--spectrum-ps", "0.004", "--block-fs", "2", "--no-progress",
                 "--out", str(tmp_path / "cmp"), "--system", "liquid", "--repeats", "1"]) in (0, 1)
    assert "baseline" in built and "fast" in built and "slow" in built


def test_the_probe_runs_the_factorys_providers(gentle, built):
    from mtsmlip.md.settings import RunSettings
    from mtsmlip.stability import engine_for

    engine_for(mtsmlip.load(gentle[0]), small_water_box(seed=5), RunSettings(0.5, 2), seed=0).run(1, progress=False)
    assert built == ["fast", "slow"]


def test_serve_runs_the_factorys_providers(gentle, built):
    from mtsmlip.integrations.ipi_client import part_forces

    part_forces(mtsmlip.load(gentle[0]), "total", small_water_box(seed=5))
    assert built == ["fast", "slow"]


def test_the_ase_class_integrates_the_factorys_providers(gentle, built):
    models, atoms = mtsmlip.load(gentle[0]), small_water_box(seed=5, momenta=True)
    MultiTimeStep(atoms, models.fast, models.slow, 0.5, 2).run(2)
    assert set(built) == {"fast", "slow"}
    assert isinstance(models.total, forces.ProviderCalculator)


def test_a_part_the_directory_lacks_is_named_when_asked_for(gentle, tmp_path):
    import shutil

    partial = tmp_path / "no-baseline"
    shutil.copytree(gentle[0], partial)
    (partial / "baseline.pt").unlink()
    manifest = (partial / "manifest.json").read_text().replace('"baseline": {', '"_unused": {')
    (partial / "manifest.json").write_text(manifest)
    models = mtsmlip.load(partial)
    with pytest.raises(DataError, match=r"no 'baseline' model"):
        models.calculator("baseline")
    with pytest.raises(DataError, match=r"part 'medium': not a part of a pair"):
        models.calculator("medium")

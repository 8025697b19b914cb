"""Model layer: build/save/load round trip, calculators obey the physics, bad input errors."""

import numpy as np
import pytest

from mtsmlip.data import DataError
from mtsmlip.models import LoadedModel, build_model, load_model, save_model
from tests.physics import energy_forces  # the physics of every model: tests/test_physics.py
from tests.systems import small_water_box, tiny_model_config


@pytest.fixture(scope="module", params=["fast", "slow"])
def loaded(request):
    cfg = tiny_model_config(request.param)
    module = build_model(cfg).eval()
    return LoadedModel(module=module, config=cfg, metadata={})


def test_save_load_roundtrip_gives_same_energy_and_forces(loaded, tmp_path):
    save_model(tmp_path / "m.pt", loaded.module, loaded.config, {"note": "x"})
    again = load_model(tmp_path / "m.pt")
    atoms = small_water_box()
    e0, f0 = energy_forces(loaded.calculator(), atoms)
    e1, f1 = energy_forces(again.calculator(), atoms)
    assert e1 == pytest.approx(e0, abs=1e-12)
    np.testing.assert_allclose(f1, f0, atol=1e-12)
    assert again.metadata == {"note": "x"}


def test_unknown_species_is_named(loaded):
    atoms = small_water_box()
    atoms[0].symbol = "C"
    with pytest.raises(DataError, match=r"\['C'\] unknown to the model"):
        energy_forces(loaded.calculator(), atoms)


def small_cell_and_supercell():
    """One water molecule in a 2.5 Å cell (narrower than every tiny cutoff) and
    the same crystal as a 2×2×2 supercell."""
    atoms = small_water_box(n_side=1)
    atoms.cell = np.eye(3) * 2.5
    atoms.wrap()
    return atoms, atoms.repeat(2)


def test_a_cell_narrower_than_the_cutoff_sees_every_periodic_image(loaded):
    """The energy is extensive and the forces periodic: the small cell must give
    1/8 of its 2×2×2 supercell's energy and the same force on every image."""
    small, supercell = small_cell_and_supercell()
    e_small, f_small = energy_forces(loaded.calculator(), small)
    e_super, f_super = energy_forces(loaded.calculator(), supercell)
    assert e_super == pytest.approx(8 * e_small, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f_super, np.tile(f_small, (8, 1)), atol=1e-9)
    assert np.abs(f_small).max() > 1e-6  # the images exert real forces


def test_loading_a_non_model_file_fails_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    import torch

    torch.save({"x": 1}, bad)
    with pytest.raises(DataError, match="not an mtsmlip model file"):
        load_model(bad)


def test_model_dir_roundtrip_and_total_is_sum(tmp_path):
    import mtsmlip
    from mtsmlip.models import write_model_dir

    fast_cfg, slow_cfg = tiny_model_config("fast"), tiny_model_config("slow", seed=1)
    write_model_dir(
        tmp_path,
        {"fast": (build_model(fast_cfg), fast_cfg), "slow": (build_model(slow_cfg), slow_cfg)},
        {"note": "test"},
    )
    models = mtsmlip.load(tmp_path)
    atoms = small_water_box()
    ef, ff = energy_forces(models.fast, atoms)
    es, fs = energy_forces(models.slow, atoms)
    et, ft = energy_forces(models.total, atoms)
    assert et == pytest.approx(ef + es, abs=1e-9)
    np.testing.assert_allclose(ft, ff + fs, atol=1e-10)


def test_unfinished_model_dir_is_refused(tmp_path):
    import mtsmlip

    (tmp_path / "fast.pt").write_bytes(b"")
    with pytest.raises(DataError, match="not a finished"):
        mtsmlip.load(tmp_path)

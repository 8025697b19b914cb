"""The demo's water box and model-name resolution."""

from pathlib import Path

import numpy as np
import pytest
from ase import units
from vesin import NeighborList

from mtsmlip.data import DataError
from mtsmlip.demo import water_box
from mtsmlip.models import resolve_model_dir


def test_water_box_has_the_density_and_composition_asked_for():
    box = water_box(64, 1.0, seed=0)
    assert box.get_chemical_formula(mode="hill") == "H128O64"
    density_g_cm3 = box.get_masses().sum() / units.mol / (box.get_volume() * 1e-24)
    assert density_g_cm3 == pytest.approx(1.0, rel=1e-9)
    assert box.cell.lengths() == pytest.approx([12.417] * 3, abs=2e-3)  # the water set's 64-molecule box


def test_water_box_molecules_are_intact_and_apart():
    box = water_box(64, 1.0, seed=1)
    i, j, d = NeighborList(cutoff=2.0, full_list=False).compute(
        box.positions, box.cell.array, [True] * 3, quantities="ijd")
    same_molecule = (i // 3) == (j // 3)
    assert d[~same_molecule].min() > 1.2  # no clashes between molecules
    oh = d[same_molecule & ((i % 3 == 0) | (j % 3 == 0))]
    assert len(oh) == 128 and np.allclose(oh, 0.9686, atol=1e-3)  # both O-H bonds of every molecule


def test_water_box_is_reproducible_per_seed():
    np.testing.assert_array_equal(water_box(8, seed=3).positions, water_box(8, seed=3).positions)
    assert not np.allclose(water_box(8, seed=3).positions, water_box(8, seed=4).positions)


def test_unknown_model_name_lists_what_is_shipped(tmp_path):
    assert resolve_model_dir(tmp_path) == tmp_path
    with pytest.raises(DataError, match="no shipped models of that name"):
        resolve_model_dir("no-such-model")


WATER_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "water.md"


def results_accuracy_table() -> dict:
    """{model: (energy MAE meV/atom, force MAE meV/Å)} from the results table of
    the shipped water models (rows 'fast alone', 'fast + slow', 'baseline')."""
    lines = WATER_RESULTS.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("| model |"))
    end = next(k for k in range(start, len(lines)) if not lines[k].startswith("|"))  # that table only
    rows = [line.strip().strip("|").split("|") for line in lines[start:end]
            if line.startswith("| model |") or line.startswith(("| fast alone", "| fast + slow", "| baseline"))]
    header = [cell.strip() for cell in rows[0]]
    energy, force = header.index("energy MAE (meV/atom)"), header.index("force MAE (meV/Å)")
    names = {"fast alone": "fast", "fast + slow": "total", "baseline": "baseline"}
    table = {}
    for cells in rows[1:]:
        name = next(v for k, v in names.items() if cells[0].strip().startswith(k))
        table[name] = (float(cells[energy].split()[0]), float(cells[force].split()[0]))
    return table


def test_shipped_water_models_reproduce_the_results_table(water_file, tmp_path, capsys):
    """`mtsmlip eval --model water` on the last 200 frames (the held-out test set)
    gives the numbers of the results page (docs/results/water.md)."""
    import json

    from mtsmlip.cli import main

    table = results_accuracy_table()
    assert set(table) == {"fast", "total", "baseline"}
    assert main(["eval", "--model", "water", "--data", str(water_file), "--frames=-200:", "--json",
                 "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_frames"] == 200
    for name, (energy_mae, force_mae) in table.items():
        assert result[name]["energy_mae_meV_per_atom"] == pytest.approx(energy_mae, abs=0.05), name
        assert result[name]["force_mae_meV_per_A"] == pytest.approx(force_mae, abs=0.05), name


def test_the_all_allegro_water_pair_is_all_pair_allegro_and_beats_its_baseline(water_file, tmp_path, capsys):
    """`water-allegro`: both parts of the pair are Allegro (pair_allegro, which
    runs on any number of MPI ranks in LAMMPS) and the baseline NequIP; on held-out
    frames (20 of the last 200 of the water set, the recipe's test set) the pair
    is more accurate in force MAE than its baseline, as on all 200
    (docs/results/lammps.md). Its manifest records a stable stability check."""
    import json

    import mtsmlip
    from mtsmlip.cli import main
    from mtsmlip.integrations.lammps_input import pair_style_of

    pair = mtsmlip.load("water-allegro")
    assert {k: pair_style_of(pair.models[k], k) for k in pair.models} == {
        "fast": "allegro", "slow": "allegro", "baseline": "nequip"}
    assert pair.manifest["stability"]["pair_stable"]
    assert main(["eval", "--model", "water-allegro", "--data", str(water_file), "--frames=-20:", "--json",
                 "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_frames"] == 20
    assert result["total"]["force_mae_meV_per_A"] < result["baseline"]["force_mae_meV_per_A"]
    assert result["total"]["force_mae_meV_per_A"] < 0.6 * result["fast"]["force_mae_meV_per_A"]

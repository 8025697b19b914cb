"""`mtsmlip eval`: metric functions on known numbers, the JSON document, frame
selection, parity plot, and clear errors."""

import json
import shutil

import numpy as np
import pytest
from ase import Atoms

import mtsmlip
from mtsmlip import evaluate
from mtsmlip.cli import main
from mtsmlip.data import DataError
from tests.training_helpers import data_file, labelled_frames, trained_dir, write_frames


def _frame(n_atoms, energy_eV, forces):
    atoms = Atoms("H" * n_atoms, positions=np.zeros((n_atoms, 3)))
    atoms.info["energy"] = energy_eV
    atoms.arrays["forces"] = np.asarray(forces, float)
    return atoms


def test_energy_errors_are_per_atom_in_meV():
    frames = [_frame(2, 1.0, np.zeros((2, 3))), _frame(4, -2.0, np.zeros((4, 3)))]
    errors = evaluate.energy_errors_meV_per_atom([1.002, -2.008], frames)
    np.testing.assert_allclose(errors, [1.0, -2.0])
    assert evaluate.mae_rmse(errors) == pytest.approx((1.5, np.sqrt(2.5)))


def test_force_errors_and_rms_in_meV_per_A():
    frames = [_frame(1, 0.0, [[1.0, 0.0, 0.0]])]
    errors = evaluate.force_errors_meV_per_A([np.array([[1.003, 0.0, -0.004]])], frames)
    np.testing.assert_allclose(errors, [3.0, 0.0, -4.0], atol=1e-9)
    assert evaluate.rms_meV_per_A([np.array([[3.0, 0.0, 4.0]]) / 1000]) == pytest.approx(np.sqrt(25 / 3))


def test_force_mae_by_species_puts_each_error_on_its_atoms():
    frame = _frame(3, 0.0, np.zeros((3, 3)))
    frame.set_chemical_symbols(["O", "H", "H"])
    predicted = np.array([[0.003, 0.0, 0.0], [0.0, 0.006, 0.0], [0.0, 0.0, -0.012]])
    by_species = evaluate.force_mae_by_species_meV_per_A([predicted], [frame])
    assert by_species == pytest.approx({"H": (6.0 + 12.0) / 6, "O": 3.0 / 3})


@pytest.mark.parametrize("text, expected", [("-3:", slice(-3, None)), ("0:10:2", slice(0, 10, 2)),
                                            ("4", slice(4, 5)), ("-1", slice(-1, None))])
def test_parse_slice(text, expected):
    assert evaluate.parse_slice(text) == expected


def test_parse_slice_rejects_garbage():
    with pytest.raises(DataError, match="not a slice"):
        evaluate.parse_slice("a:b")


def _eval_json(capsys, *extra):
    trained_dir()  # train first (it prints), so that only eval's output is read below
    capsys.readouterr()
    assert main(["eval", "--model", str(trained_dir()), "--data", str(data_file()), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_json_document_on_the_test_split(capsys, tmp_path):
    report = _eval_json(capsys, "--split", "test", "--out", str(tmp_path))
    assert set(report) == {"fast", "total", "baseline", "fast_force_rms_meV_per_A", "slow_force_rms_meV_per_A",
                           "force_mae_by_species_meV_per_A", "n_frames"}
    assert set(report["force_mae_by_species_meV_per_A"]) == {"fast", "total", "baseline"}
    for name in ("fast", "total", "baseline"):
        assert set(report[name]) == set(evaluate.ERROR_KEYS)
        assert report[name]["force_rmse_meV_per_A"] >= report[name]["force_mae_meV_per_A"] > 0
    assert report["n_frames"] == len(mtsmlip.load(trained_dir()).manifest["split"]["test"])
    assert (tmp_path / "parity.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_total_matches_the_total_calculator(capsys):
    report = _eval_json(capsys, "--frames=-1:")
    atoms = __import__("mtsmlip.training", fromlist=["x"]).frames_of(data_file())[-1]
    ref_f = atoms.arrays["forces"]
    a = atoms.copy()
    a.calc = mtsmlip.load(trained_dir()).total
    rmse = 1000 * np.sqrt(np.mean((a.get_forces() - ref_f) ** 2))
    e_err = 1000 * abs(a.get_potential_energy() - atoms.info["energy"]) / len(atoms)
    assert report["n_frames"] == 1
    assert report["total"]["force_rmse_meV_per_A"] == pytest.approx(rmse, rel=1e-9)
    assert report["total"]["energy_mae_meV_per_atom"] == pytest.approx(e_err, rel=1e-9)


def test_eval_without_baseline_reports_null(capsys, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_dir(), model_dir, ignore=shutil.ignore_patterns("checkpoints"))
    (model_dir / "baseline.pt").unlink()
    assert main(["eval", "--model", str(model_dir), "--data", str(data_file()), "--json", "--frames", "0:2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] is None and report["n_frames"] == 2
    assert (model_dir / "parity.png").is_file()


def test_eval_unknown_species_names_the_frame(tmp_path):
    frames = labelled_frames(2)
    frames[1].numbers[4] = 6  # carbon
    path = write_frames(tmp_path / "c.extxyz", frames)
    models = mtsmlip.load(trained_dir())
    with pytest.raises(DataError, match=r"c.extxyz, frame 1 .*\['C'\] unknown to the model"):
        evaluate.predict(models, evaluate.select_frames(path, models.manifest), path)


def test_eval_unknown_species_exits_with_the_error(capsys, tmp_path):
    frames = labelled_frames(1)
    frames[0].numbers[0] = 6
    path = write_frames(tmp_path / "c.extxyz", frames)
    assert main(["eval", "--model", str(trained_dir()), "--data", str(path)]) == 2
    assert "unknown to the model" in capsys.readouterr().err


def test_eval_split_needs_the_training_file(tmp_path):
    path = write_frames(tmp_path / "other.extxyz", labelled_frames(3))
    with pytest.raises(DataError, match="--split needs the same data file"):
        evaluate.select_frames(path, mtsmlip.load(trained_dir()).manifest, split="test")


def test_eval_of_an_unfinished_model_dir_is_refused(capsys, tmp_path):
    shutil.copytree(trained_dir(), tmp_path / "m", ignore=shutil.ignore_patterns("checkpoints", "manifest.json"))
    assert main(["eval", "--model", str(tmp_path / "m"), "--data", str(data_file())]) == 2
    assert "not a finished" in capsys.readouterr().err


def test_eval_without_model_uses_the_shipped_water_models_and_writes_plots_outside_the_package(
        water_file, capsys, tmp_path, monkeypatch):
    from mtsmlip.models import SHIPPED_DIR

    monkeypatch.chdir(tmp_path)
    shipped_before = sorted(p.name for p in (SHIPPED_DIR / "water").iterdir())
    assert main(["eval", "--data", str(water_file), "--frames=-2:", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_frames"] == 2 and report["baseline"] is not None
    assert (tmp_path / "eval-water" / "parity.png").is_file()
    assert sorted(p.name for p in (SHIPPED_DIR / "water").iterdir()) == shipped_before

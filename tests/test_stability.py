"""The stability check after training: a pair that blows up is reported as
failed (never as fine) with where and what to try; a gentle pair passes."""

import pytest

import mtsmlip
from mtsmlip.errors import DataError
from mtsmlip.stability import StabilitySettings, stability_check, verdict_lines
from tests.systems import small_water_box, write_tiny_pair

QUICK = StabilitySettings(md_fs=10.0, probe_fs=5.0, frames=1)


@pytest.fixture(scope="module")
def gentle(tmp_path_factory):
    return mtsmlip.load(write_tiny_pair(tmp_path_factory.mktemp("gentle"), energy_scale=0.01))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Untrained models with forces of hundreds of eV/Å: atoms fly apart or collapse within femtoseconds."""
    return mtsmlip.load(write_tiny_pair(tmp_path_factory.mktemp("broken"), energy_scale=500.0))


def test_a_gentle_pair_passes_and_every_run_is_recorded(gentle):
    lines = []
    record = stability_check(gentle, [small_water_box(seed=1)], QUICK, say=lines.append)
    assert record["pair_stable"] and record["baseline_stable"]
    assert {(r["model"], r["temperature_K"]) for r in record["runs"]} >= {("pair", 300.0), ("pair", 450.0),
                                                                           ("baseline", 300.0), ("baseline", 450.0)}
    assert all(r["stable"] and r["fs"] == pytest.approx(10.0, abs=2.5) for r in record["runs"])
    assert "ran stably everywhere" in lines[-1]
    assert {r["thermostat"] for r in record["runs"]} == {"bussi"}  # a periodic box: compare's default


def test_the_check_runs_under_compares_default_thermostat(gentle):
    """Bussi for a periodic start, Langevin for an isolated one (what `compare`
    would run), unless a thermostat is set; each run records which."""
    box = small_water_box(seed=1)
    cluster = box.copy()
    cluster.pbc = False
    cluster.cell = None
    assert QUICK.thermostat_for(box) == "bussi" and QUICK.thermostat_for(cluster) == "langevin"
    assert StabilitySettings(thermostat="langevin").thermostat_for(box) == "langevin"
    run = StabilitySettings(tau_fs=20.0).run(300.0, 2, thermostat="bussi")
    assert (run.thermostat, run.tau_fs, run.friction_per_fs) == ("bussi", 20.0, None)
    assert QUICK.run(300.0, 2, thermostat="langevin").friction_per_fs == QUICK.friction_per_fs
    with pytest.raises(ValueError, match="resolved"):
        QUICK.run(300.0)  # "auto" is per start
    with pytest.raises(DataError, match="thermostat"):
        StabilitySettings(thermostat="nve")
    lines = []
    record = stability_check(gentle, [cluster], QUICK, say=lines.append)
    assert {r["thermostat"] for r in record["runs"]} == {"langevin"}
    assert lines[0].startswith("stability check: Langevin MD")


def test_a_broken_pair_is_reported_as_failed_with_what_to_try(broken):
    lines = []
    record = stability_check(broken, [small_water_box(seed=1)], QUICK, say=lines.append)
    assert not record["pair_stable"]
    failed = [r for r in record["runs"] if r["model"] == "pair" and not r["stable"]]
    assert failed and all(r["problem"] for r in failed) and all(r["fs"] < 10.0 for r in failed)
    text = "\n".join(verdict_lines(record))
    assert "FAILED" in text and ("try:" in text or "baseline blew up too" in text)
    assert not any("ran stably" in line for line in lines)


def test_the_accuracy_summary_compares_pair_and_baseline_per_species(gentle):
    """Labelled frames (EMT): the summary's numbers are the evaluation's, per
    species, and a pair worse than the baseline on a species is said so."""
    from mtsmlip.evaluate import force_mae_by_species_meV_per_A, predict
    from mtsmlip.stability import accuracy_lines, accuracy_summary
    from mtsmlip.data import frames_of
    from tests.training_helpers import data_file

    frames = frames_of(data_file())[:3]
    summary = accuracy_summary(gentle, frames, "emt frames")
    expected = force_mae_by_species_meV_per_A(predict(gentle, frames, "emt frames")["baseline"][1], frames)
    assert summary["force_mae_by_species_meV_per_A"]["baseline"] == pytest.approx(expected)
    assert set(summary["force_mae_by_species_meV_per_A"]["pair"]) == {"H", "O"}
    text = "\n".join(accuracy_lines(summary))
    by = summary["force_mae_by_species_meV_per_A"]
    worse = [s for s in by["pair"] if by["pair"][s] > by["baseline"][s]]
    assert ("less accurate than the baseline on" in text) == bool(worse)
    assert "pair / baseline" in text


def test_each_run_lasts_a_fixed_number_of_atom_femtoseconds_above_a_size(gentle):
    """A box twice as large runs half as long (the same atoms x fs), within the
    cap and the floor; the run lengths are what the record and the first line say."""
    settings = StabilitySettings(md_fs=10.0, atom_fs=24 * 5.0, min_md_fs=2.0, probe_fs=5.0, frames=2)
    assert settings.md_fs_for(6) == 10.0  # small: the cap
    assert settings.md_fs_for(24) == 5.0 and settings.md_fs_for(48) == 2.5
    assert settings.md_fs_for(10_000) == 2.0  # large: the floor
    small, large = small_water_box(seed=1), small_water_box(seed=2).repeat((2, 1, 1))
    lines = []
    record = stability_check(gentle, [small, large], settings, say=lines.append)
    assert len(small) == 24 and len(large) == 48
    for frame, fs in ((0, 5.0), (1, 2.5)):
        runs = [r["fs"] for r in record["runs"] if r["frame"] == frame]
        assert len(runs) >= 4 and runs == pytest.approx([fs] * len(runs), abs=0.6), (frame, runs)
    assert "2.5 / 5 fs per run" in lines[0]

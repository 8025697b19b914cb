"""`mtsmlip compare`: the report and JSON it promises, resume without loss, bad input."""

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms

from mtsmlip import analysis as an
from mtsmlip.cli import main
from mtsmlip.compare import Production
from tests.systems import small_water_box, write_tiny_pair


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    write_tiny_pair(root / "pair", energy_scale=0.02)  # gentle forces: short runs stay physical
    rng = np.random.default_rng(0)
    sites = np.array(list(np.ndindex(3, 3, 3)), float) * 2.1 + rng.normal(0, 0.05, (27, 3))
    gas = Atoms("O9H18", positions=sites[rng.permutation(27)], cell=np.eye(3) * 6.3, pbc=True)
    ase.io.write(root / "gas.extxyz", gas)
    return root / "pair", root / "gas.extxyz"


def compare(setup, out, *extra, system="liquid"):
    model, structure = setup
    argv = ["compare", "--model", str(model), "--structure", str(structure), "--ps", "0.02",
            "--timestep-fs", "0.25", "--n-inner", "2,4", "--temperature-K", "50", "--equilibrate-ps", "0.002",
            "--nve-ps", "0.004", "--spectrum-ps", "0.004", "--block-fs", "2", "--no-progress", "--out", str(out),
            "--system", system, "--repeats", "1"]  # liquid: 0.02 ps is too short to see the gas diffuse
    return main(argv + list(extra))


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert compare(setup, out) == 0
    return out


def test_json_report_and_plots(finished):
    result = json.loads((finished / "compare.json").read_text())
    assert {"baseline", "runs", "largest_n_within_tolerance", "scale_separation"} <= set(result)
    assert result["baseline"]["ns_per_day"] > 0
    runs = {r["n_inner"]: r for r in result["runs"]}
    assert sorted(runs) == [2, 4]
    for n, r in runs.items():
        assert r["outer_timestep_fs"] == pytest.approx(n * 0.25)
        assert r["speedup"] == pytest.approx(r["ns_per_day"] / result["baseline"]["ns_per_day"])
        for key in ("rdf_diff", "drift_meV_per_atom_per_ps", "diffusion_A2_per_ps", "diffusion_err_A2_per_ps",
                    "energy_fluctuation_ratio"):
            assert np.isfinite(r[key]), key
        assert r["within_tolerance"] == (not r["reasons"])
        assert r["sampling_ok"] or not r["within_tolerance"]  # dynamics judges a superset of sampling's checks
        assert r["simulated_ps"] == pytest.approx(0.02)
        temperatures = r["temperature_by_species_K"]
        assert set(temperatures) == {"H", "O"} and all(t > 0 and err >= 0 for t, err in temperatures.values())
    assert result["baseline"]["simulated_ps"] == pytest.approx(0.02)
    assert result["sampling_checks"] == ["temperature", "rdf"] and "fluctuation" in result["checks_applied"]
    sampled = {n: r["sampling_ok"] for n, r in runs.items()}
    assert result["largest_n_for_sampling"] == an.largest_n_within_tolerance(sampled)
    report = (finished / "report.md").read_text()
    # D fitted at 20-50 % of the 0.02 ps run (no species diffuses in it: nothing judged, no note on the fit)
    assert result["baseline"]["diffusion_fit_lags_ps"] == pytest.approx([0.004, 0.01])
    assert result["diffusion_judged_species"] == [] and "short-time mobility" not in report
    for png in ("rdf.png", "msd_O.png", "vdos.png", "nve_energy.png", "force_spectrum.png"):
        assert (finished / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report


def test_scale_separation_fractions_grow_with_the_outer_step(finished):
    sep = json.loads((finished / "compare.json").read_text())["scale_separation"]
    slow = [row["slow_power_above_nyquist"] for row in sep["per_n"]]
    assert all(0.0 <= f <= 1.0 for f in slow)
    assert slow == sorted(slow)  # a larger outer step has a lower Nyquist frequency


def test_interrupted_compare_resumes_to_the_uninterrupted_result(setup, finished, tmp_path, monkeypatch):
    calls, advance = {"n": 0}, Production.advance

    def stop_after_three_blocks(self, run, steps):
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        advance(self, run, steps)

    monkeypatch.setattr(Production, "advance", stop_after_three_blocks)
    assert compare(setup, tmp_path) == 130  # Ctrl-C: a message, no traceback
    kept = json.loads((tmp_path / "progress.json").read_text())
    assert sum(v["steps"] for v in kept.values()) > 0
    monkeypatch.setattr(Production, "advance", advance)
    assert compare(setup, tmp_path) == 0
    for label in ("baseline", "mts_n2", "mts_n4"):
        with np.load(tmp_path / "runs" / label / "samples.npz") as a, \
                np.load(finished / "runs" / label / "samples.npz") as b:
            np.testing.assert_array_equal(a["step"], b["step"])
            np.testing.assert_array_equal(a["positions_A"], b["positions_A"])


def test_too_short_runs_report_no_diffusion_and_fail_by_name(setup, tmp_path):
    assert compare(setup, tmp_path, "--ps", "0.004", "--n-inner", "4", "--spectrum-ps", "0") == 0
    run = json.loads((tmp_path / "compare.json").read_text())["runs"][0]
    assert run["diffusion_A2_per_ps"] is None
    assert not run["within_tolerance"]
    assert any(reason.startswith("diffusion") for reason in run["reasons"])


@pytest.mark.parametrize("extra, message", [
    (("--n-inner", "2,x"), "argument --n-inner: must be comma-separated integers"),
    (("--ps", "0"), "argument --ps: must be a finite number > 0"),
    (("--n-inner", "0,2"), "integers >= 1"),
    (("--equilibrate-friction-per-fs", "0"), "argument --equilibrate-friction-per-fs: must be a finite number > 0"),
])
def test_bad_settings_are_refused(setup, tmp_path, capsys, extra, message):
    assert compare(setup, tmp_path, *extra) == 2
    assert message in capsys.readouterr().err


def test_json_on_stdout_is_exactly_compare_json_and_exits_0(setup, finished, capsys, monkeypatch):
    import mtsmlip.compare as compare_mod

    def must_not_run(*args):
        raise AssertionError("a finished comparison ran MD again")

    monkeypatch.setattr(compare_mod, "nve_trace", must_not_run)
    monkeypatch.setattr(compare_mod, "force_series", must_not_run)
    capsys.readouterr()
    assert compare(setup, finished, "--json") == 0  # everything is done: analysis and report only
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((finished / "compare.json").read_text())
    assert printed["runs"] and printed["baseline"]["ns_per_day"] > 0


def test_hydrogen_mass_repartitioning_applies_to_every_run(setup, tmp_path, capsys):
    model, gas = setup
    assert compare(setup, tmp_path / "gas", "--hmr-amu", "1.0") == 2  # separate atoms: no bonds to move mass along
    assert "H atom 9 has no heavy atom within 1.5 Å" in capsys.readouterr().err
    ase.io.write(tmp_path / "water.extxyz", small_water_box(seed=4))
    out = tmp_path / "cmp"
    assert compare((model, tmp_path / "water.extxyz"), out, "--hmr-amu", "1.0", "--ps", "0.004",
                   "--n-inner", "2", "--spectrum-ps", "0") == 0
    assert json.loads((out / "compare.json").read_text())["hmr_amu"] == 1.0
    assert "Hydrogen mass repartitioning: 1.0 amu" in (out / "report.md").read_text()
    with np.load(out / "runs" / "baseline" / "restart.npz") as z:
        assert json.loads(str(z["meta"]))["settings"]["hmr_amu"] == 1.0


def test_resuming_with_other_settings_is_refused(setup, finished, capsys):
    assert compare(setup, finished, "--temperature-K", "60") == 2
    assert "other settings" in capsys.readouterr().err


def test_an_isolated_molecule_gets_its_own_checks_and_a_report(setup, tmp_path):
    """No cell: compare judges distance, angle and energy distributions (and
    drift, temperature, VDOS), computes no g(r) and no diffusion, and says so."""
    cluster = small_water_box(n_side=2, spacing_A=3.0, vacuum=True)
    ase.io.write(tmp_path / "cluster.extxyz", cluster)
    assert compare((setup[0], tmp_path / "cluster.extxyz"), tmp_path / "out", system="auto") == 0
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["system_kind"] == "molecule"
    assert result["checks_applied"] == ["drift", "fluctuation", "temperature", "vdos", "distances", "angles", "energy"]
    for r in result["runs"]:
        assert r["rdf_diff"] is None and r["diffusion_A2_per_ps"] is None
        assert set(r["structure_diff"]) == {"distances", "angles"}  # water molecules have no dihedral
        assert all(0.0 <= v <= 1.0 for v in r["structure_diff"].values())
        assert np.isfinite(r["potential_energy_meV_per_atom"]).all()
        assert not any(reason.startswith(("rdf", "diffusion")) for reason in r["reasons"])
    for png in ("distances.png", "angles.png", "energy.png", "vdos.png"):
        assert (tmp_path / "out" / png).is_file(), png
    assert not (tmp_path / "out" / "rdf.png").exists()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "molecule: checks drift" in report
    assert "NVT (langevin, " in report  # thermostat auto: a global rescaling cannot thermalise a small molecule


def test_a_periodic_system_whose_atoms_stay_put_is_judged_as_a_crystal(setup, tmp_path):
    """Periodic, and no species moves 1 Å in the baseline run: vibration about
    the sites and the Lindemann ratio are judged, diffusion is not computed."""
    assert compare(setup, tmp_path / "out", system="auto") == 0
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["system_kind"] == "crystal" and result["diffusion_judged_species"] == []
    assert "vibration" in result["checks_applied"] and "diffusion" not in result["checks_applied"]
    for r in result["runs"] + [result["baseline"]]:
        assert r["diffusion_A2_per_ps"] is None and 0 < r["lindemann_ratio"] < 0.15
        assert set(r["vibration_A2_by_species"]) == {"H", "O"}
    assert all(np.isfinite(r["rdf_diff"]) for r in result["runs"])


def test_compare_refuses_a_slab_and_a_kind_that_does_not_fit(setup, tmp_path, capsys):
    slab = small_water_box(n_side=2)
    slab.pbc = [True, True, False]
    ase.io.write(tmp_path / "slab.extxyz", slab)
    assert compare((setup[0], tmp_path / "slab.extxyz"), tmp_path / "a", system="auto") == 2
    assert "periodic in 2 of 3 directions" in capsys.readouterr().err
    assert compare(setup, tmp_path / "b", system="molecule") == 2
    assert "--system molecule needs an isolated structure" in capsys.readouterr().err


def test_an_mts_run_that_blows_up_fails_its_n_and_the_comparison_goes_on(setup, tmp_path, monkeypatch):
    """Instability at a large n is that n's result: recorded with its speed and
    reason; the baseline and the other runs finish, and a rerun re-analyses."""
    from mtsmlip.md.engine import Engine
    from mtsmlip.md.safety import MDInstability

    run = Engine.run

    def blow_up_at_n4(self, steps, progress=True):
        if self.settings.n_inner == 4 and not self.settings.baseline and self.step + steps > 6 \
                and self.settings.thermostat is not None:
            run(self, max(0, 6 - self.step), progress)
            raise MDInstability("step 7: conserved energy jumped (made up by the test)")
        return run(self, steps, progress)

    monkeypatch.setattr(Engine, "run", blow_up_at_n4)
    assert compare(setup, tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    runs = {r["n_inner"]: r for r in result["runs"]}
    assert runs[4]["within_tolerance"] is False and "made up by the test" in runs[4]["reasons"][0]
    assert runs[4]["simulated_ps"] == pytest.approx(6 * 4 * 0.25 / 1000)
    assert runs[2]["simulated_ps"] == pytest.approx(0.02) and "unstable" not in runs[2]
    assert result["largest_n_within_tolerance"] in (None, 2)
    monkeypatch.setattr(Engine, "run", lambda *a, **k: pytest.fail("a finished comparison ran MD again"))
    assert compare(setup, tmp_path / "out") == 0
    assert json.loads((tmp_path / "out" / "compare.json").read_text()) == result


def test_n_inner_auto_adds_the_probes_choice_and_reports_why(setup, tmp_path):
    assert compare(setup, tmp_path, "--n-inner", "2,auto", "--probe-fs", "2") == 0
    probe = json.loads((tmp_path / "n_inner_auto.json").read_text())
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["n_inner_auto"] == probe
    assert sorted(r["n_inner"] for r in result["runs"]) == sorted({2, probe["n_inner"]})
    assert [c["n_inner"] for c in probe["candidates"]][0] == 1
    assert f"chose n = {probe['n_inner']}" in (tmp_path / "report.md").read_text()
    assert compare(setup, tmp_path, "--n-inner", "2,auto", "--probe-fs", "2") == 0  # resumed: same choice
    assert json.loads((tmp_path / "n_inner_auto.json").read_text()) == probe


# ---- --repeats: independent starts, CIs, the model's and the integrator's errors -----
@pytest.fixture(scope="module")
def repeated(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("repeated")
    assert compare(setup, out, "--repeats", "2") == 0
    return out


def test_repeats_run_from_independent_starts_and_report_intervals(repeated):
    result = json.loads((repeated / "compare.json").read_text())
    assert result["repeats"] == 2 and result["per_repeat"] == ["repeat-1", "repeat-2"]
    starts = [ase.io.read(repeated / f"repeat-{k}" / "start.extxyz") for k in (1, 2)]
    assert not np.allclose(starts[0].positions, starts[1].positions)  # other seeds: other starts
    for k in (1, 2):  # each repeat is a full comparison with n = 1 added
        single = json.loads((repeated / f"repeat-{k}" / "compare.json").read_text())
        assert sorted(r["n_inner"] for r in single["runs"]) == [1, 2, 4]
        assert "temperature O" in single["baseline"]["observables"]
    model = result["model_error"]
    assert model["n_inner"] == 1 and model["against"] == "baseline"
    assert [c["n_inner"] for c in result["integrator_error"]] == [2, 4]
    names = {d["observable"] for d in model["differences"]}
    assert {"temperature H", "temperature O", "drift", "fluctuation", "vdos_centroid H"} <= names
    for column in [model] + result["integrator_error"]:
        for d in column["differences"]:
            diff = d["difference"]
            assert diff["low"] <= diff["mean"] <= diff["high"] and diff["repeats"] == 2
            assert d["verdict"] in ("same", "different", "cannot tell")
    report = (repeated / "report.md").read_text()
    assert "pair n=1 − baseline" in report and "![differences](differences.png)" in report
    assert (repeated / "differences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_repeats_rerun_as_a_pure_reanalysis(setup, repeated, monkeypatch):
    from mtsmlip.md.engine import Engine

    before = json.loads((repeated / "compare.json").read_text())
    monkeypatch.setattr(Engine, "run", lambda *a, **k: pytest.fail("a finished comparison ran MD again"))
    assert compare(setup, repeated, "--repeats", "2", "--tolerance", "temperature=0.5") == 0
    after = json.loads((repeated / "compare.json").read_text())
    assert after["tolerances"]["temperature"]["value"] == 0.5
    assert after["model_error"]["differences"][0]["difference"] == before["model_error"]["differences"][0]["difference"]


def test_repeats_refuse_other_settings_and_continue_an_older_single_comparison(setup, repeated, finished, capsys,
                                                                              monkeypatch):
    from mtsmlip.md.engine import Engine

    assert compare(setup, repeated, "--repeats", "2", "--temperature-K", "60") == 2
    assert "other temperature_K" in capsys.readouterr().err
    assert compare(setup, repeated, "--tolerance", "difusion=0.1", "--repeats", "2") == 2
    assert "unknown observable 'difusion'" in capsys.readouterr().err
    monkeypatch.setattr(Engine, "run", lambda *a, **k: pytest.fail("a finished comparison ran MD again"))
    assert compare(setup, finished, "--repeats", "2") == 0  # a folder from before --repeats: re-analysed as it is
    assert "continuing it as one" in capsys.readouterr().err
    assert "largest_n_within_tolerance" in json.loads((finished / "compare.json").read_text())


def test_repeats_of_an_isolated_molecule_run_as_replicas_in_one_comparison(setup, tmp_path):
    model, _ = setup
    molecule = small_water_box(n_side=1, vacuum=True)
    ase.io.write(tmp_path / "water.extxyz", molecule)
    out = tmp_path / "rep"
    argv = ["compare", "--model", str(model), "--structure", str(tmp_path / "water.extxyz"), "--ps", "0.02",
            "--timestep-fs", "0.25", "--n-inner", "2", "--temperature-K", "50", "--equilibrate-ps", "0.002",
            "--nve-ps", "0.004", "--spectrum-ps", "0.004", "--block-fs", "2", "--no-progress", "--out", str(out),
            "--repeats", "3"]
    assert main(argv) == 0
    copies = ase.io.read(out / "replicas.extxyz")
    assert len(copies) == 3 * len(molecule) and not (out / "repeat-1").exists()
    assert sorted(r["n_inner"] for r in json.loads((out / "replicas" / "compare.json").read_text())["runs"]) == [1, 2]
    result = json.loads((out / "compare.json").read_text())
    assert result["per_repeat"] == [f"replicas (copy {k})" for k in (1, 2, 3)]
    names = {d["observable"]: d for d in result["model_error"]["differences"]}
    assert {"temperature H", "temperature O", "bond_length H-O", "vdos_centroid H"} <= set(names)
    assert "drift" not in names  # the whole system's: not split per copy
    assert all(d["difference"]["repeats"] == 3 for d in names.values())
    starts = ase.io.read(out / "replicas" / "start.extxyz")
    oh = [np.linalg.norm(starts.positions[3 * k + 1] - starts.positions[3 * k]) for k in range(3)]
    assert len(set(np.round(oh, 6))) == 3  # each copy moved on its own


def test_a_baseline_with_room_to_spare_in_its_step_is_named():
    """A baseline whose NVE ΔE/ΔK at δt is far below the fluctuation check's bound
    could run a larger step itself (a metal at 0.5 fs); compare says so, with
    the step at which ΔE/ΔK ∝ δt² would reach 0.01. Water's baseline at 0.5 fs
    (ΔE/ΔK about 0.016) gets no note."""
    from mtsmlip.compare_report import HEADROOM_FLUCTUATION, baseline_step_headroom, headroom_text

    metal = baseline_step_headroom(0.0001, 0.5)
    assert metal["baseline_step_fs"] == pytest.approx(0.5 * (HEADROOM_FLUCTUATION / 0.0001) ** 0.5)
    assert metal["baseline_step_fs"] == pytest.approx(5.0)
    assert "--timestep-fs near 5.0" in headroom_text(metal)
    assert baseline_step_headroom(0.016, 0.5) is None           # water: no room
    assert baseline_step_headroom(0.003, 0.5) is None           # room for less than twice δt
    for nothing in (None, float("nan"), 0.0):
        assert baseline_step_headroom(nothing, 0.5) is None


def test_repeats_report_the_least_baseline_step_headroom():
    from mtsmlip.compare_repeats import _least_headroom

    a, b = {"baseline_step_fs": 5.0}, {"baseline_step_fs": 4.2}
    assert _least_headroom([a, b]) is b
    assert _least_headroom([a, None]) is None and _least_headroom([]) is None


def test_one_run_does_not_judge_the_diffusion_of_atoms_still_in_their_cage():
    """Random walks over 2 ps: Ar (D = 2 Å²/ps) moves 12 Å² within half the run
    (1 ps), past its neighbours' shell; Kr (D = 0.2) moves 1.2 Å², which is
    water's case in 2 ps: it is reported, not judged, and the table says why and
    how long a run would tell (at least 2 ps × 9 / 1.2)."""
    from types import SimpleNamespace

    from mtsmlip.compare_report import CAGE_MSD_A2, caged_species, format_table

    rng = np.random.default_rng(3)
    frame_ps, n_frames = 0.01, 201
    walks = [np.cumsum(rng.normal(0, np.sqrt(2 * d * frame_ps), (n_frames, 32, 3)), axis=0) for d in (2.0, 0.2)]
    template = Atoms("Ar32Kr32", cell=np.eye(3) * 40.0, pbc=True)
    x = np.concatenate(walks, axis=1) + 20.0
    baseline = SimpleNamespace(samples={"positions_A": x, "step": np.arange(n_frames)},
                               settings=SimpleNamespace(simulated_ps=lambda steps: frame_ps * steps))
    caged = caged_species(baseline, template, ["Ar", "Kr"])
    assert set(caged) == {"Kr"} and caged["Kr"]["msd_A2"] == pytest.approx(6 * 0.2 * 1.0, rel=0.3)
    assert caged["Kr"]["msd_A2"] < CAGE_MSD_A2 and caged["Kr"]["half_run_ps"] == pytest.approx(1.0)
    assert caged_species(baseline, template, []) == {}
    result = {"system_kind": "liquid", "diffusion_judged_species": ["Ar"], "diffusion_caged_species": caged,
              "baseline": {"temperature_by_species_K": {"Ar": [300.0, 1.0], "Kr": [300.0, 1.0]},
                           "ns_per_day": 1.0, "outer_timestep_fs": 1.0, "drift_meV_per_atom_per_ps": 0.0,
                           "mean_temperature_K": 300.0, "energy_fluctuation_ratio": 0.01,
                           "diffusion_A2_per_ps": 0.2, "diffusion_err_A2_per_ps": 0.01,
                           "diffusion_fit_lags_ps": [0.4, 1.0], "rdf_diff": None},
              "runs": [], "largest_n_within_tolerance": None, "tolerance": {}}
    caged_line = [line for line in format_table(result).splitlines() if "reported, not judged" in line]
    assert len(caged_line) == 1 and caged_line[0].startswith("diffusion reported, not judged, for Kr:")
    needed_ps = float(caged_line[0].split("runs of at least ")[1].split(" ps")[0])
    assert needed_ps == pytest.approx(2 * 9 / caged["Kr"]["msd_A2"], rel=0.05)


def test_a_caged_species_is_left_out_of_the_verdict_and_named_in_compare_json(setup, finished, tmp_path,
                                                                                 monkeypatch):
    """The finished 0.02 ps comparison analysed again as if H and O diffused in
    its baseline: in 0.01 ps they moved far under 9 Å², so both are caged, none is
    judged, and no run fails on diffusion."""
    import shutil

    import mtsmlip.compare_report as report

    out = tmp_path / "again"
    shutil.copytree(finished, out)
    monkeypatch.setattr(report, "diffusing_species", lambda baseline, template: ["H", "O"])
    assert compare(setup, out) == 0
    result = json.loads((out / "compare.json").read_text())
    assert set(result["diffusion_caged_species"]) == {"H", "O"} and result["diffusion_judged_species"] == []
    assert not any(reason.startswith("diffusion") for r in result["runs"] for reason in r["reasons"])
    monkeypatch.setattr(report, "caged_species", lambda baseline, template, species: {})
    assert compare(setup, out) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["diffusion_judged_species"] == ["H", "O"] and result["diffusion_caged_species"] == {}
    # judged, and fitted far inside the ballistic start, which the report says
    report = (out / "report.md").read_text()
    assert "so this is a short-time mobility" in report and "not a diffusion coefficient" in report

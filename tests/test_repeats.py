"""Independent repeats on synthetic trajectories with a known answer: the
three-way verdict says same / different / cannot tell where it should, and the
confidence interval covers the true difference at its stated rate."""

import math

import numpy as np
import pytest

from mtsmlip.analysis import species_diffusion
from mtsmlip.analysis import repeats as rp
from mtsmlip.errors import DataError

FRAME_PS = 0.01


def brownian_D(rng, D_A2_per_ps: float, n_atoms: int = 64, n_frames: int = 400) -> float:
    """Diffusion coefficient estimated (as compare does: whole-run MSD fits per
    group of atoms) from a random walk whose true D is known: steps of variance
    2·D·Δt per coordinate."""
    steps = rng.normal(0.0, math.sqrt(2 * D_A2_per_ps * FRAME_PS), size=(n_frames, n_atoms, 3))
    x = np.cumsum(steps, axis=0)
    d = species_diffusion(x, ["Ar"] * n_atoms, np.ones(n_atoms), FRAME_PS)
    return d["Ar"].D_A2_per_ps


def repeats_of(rng, D_run, D_ref, k, **kw):
    runs = [{"diffusion Ar": brownian_D(rng, D_run, **kw)} for _ in range(k)]
    refs = [{"diffusion Ar": brownian_D(rng, D_ref, **kw)} for _ in range(k)]
    return rp.differences(runs, refs)[0]


def test_verdict_says_different_for_diffusion_10_percent_apart():
    rng = np.random.default_rng(1)
    found = repeats_of(rng, 1.1, 1.0, k=8, n_atoms=512, n_frames=800)
    assert found.verdict == rp.DIFFERENT, found
    assert found.difference.low > 0.05  # outside the ±5 % band, above it
    assert found.repeats_to_settle is None


def test_verdict_says_same_for_identical_processes():
    rng = np.random.default_rng(2)
    found = repeats_of(rng, 1.0, 1.0, k=8, n_atoms=512, n_frames=800)
    assert found.verdict == rp.SAME, found
    assert -0.05 <= found.difference.low and found.difference.high <= 0.05


def test_verdict_cannot_tell_from_short_noisy_runs_and_says_what_would_settle_it():
    rng = np.random.default_rng(3)
    found = repeats_of(rng, 1.0, 1.0, k=3, n_atoms=16, n_frames=100)
    assert found.verdict == rp.CANNOT_TELL, found
    assert found.repeats_to_settle is not None and found.repeats_to_settle > 3


def test_confidence_interval_covers_the_true_difference_at_its_stated_rate():
    """Over many synthetic experiments of K = 4 repeats each (diffusion 10 %
    apart), the 95 % CI contains the true difference about 95 % of the time."""
    rng = np.random.default_rng(4)
    true_ref = 1.0
    # the estimator's own mean (whole-run MSD fits of a finite walk), so the "true" value is the
    # expectation of what the repeats measure, as it is for MD observables
    mean_run = np.mean([brownian_D(rng, 1.1, n_atoms=16, n_frames=120) for _ in range(400)])
    mean_ref = np.mean([brownian_D(rng, true_ref, n_atoms=16, n_frames=120) for _ in range(400)])
    covered, trials = 0, 300
    for _ in range(trials):
        d = repeats_of(rng, 1.1, true_ref, k=4, n_atoms=16, n_frames=120).difference
        covered += d.low <= mean_run - mean_ref <= d.high
    rate = covered / trials
    assert 0.91 <= rate <= 0.99, rate


def test_one_repeat_cannot_tell():
    found = rp.differences([{"temperature H": 301.0}], [{"temperature H": 300.0}])[0]
    assert found.verdict == rp.CANNOT_TELL and math.isinf(found.difference.half_width)


def test_relative_and_absolute_tolerances():
    runs = [{"temperature H": 300.0 + e, "rdf_peak_position O-O": 2.80 + e / 100} for e in (0.1, -0.1, 0.0, 0.05)]
    refs = [{"temperature H": 300.0, "rdf_peak_position O-O": 2.80} for _ in runs]
    found = {d.observable: d for d in rp.differences(runs, refs)}
    assert found["temperature H"].allowed == pytest.approx(3.0)  # 1 % of 300 K
    assert found["rdf_peak_position O-O"].allowed == pytest.approx(0.01)  # Å
    assert all(d.verdict == rp.SAME for d in found.values())


def test_overall_verdict_and_largest_n():
    same = rp.Difference("temperature H", "K", 300, rp.Interval(0.1, 0.5, 4), 3.0, rp.SAME, None)
    unsure = rp.Difference("diffusion O", "", 0.2, rp.Interval(0.01, 0.02, 4), 0.01, rp.CANNOT_TELL, 9)
    off = rp.Difference("drift", "", 0, rp.Interval(2.0, 0.5, 4), 0.5, rp.DIFFERENT, None)
    assert rp.overall([same]) == rp.SAME
    assert rp.overall([same, unsure]) == rp.CANNOT_TELL
    assert rp.overall([same, unsure], purpose="sampling") == rp.SAME
    assert rp.overall([same, unsure, off]) == rp.DIFFERENT
    assert rp.overall([same], unstable=True) == rp.DIFFERENT
    verdicts = {2: rp.SAME, 4: rp.CANNOT_TELL, 6: rp.SAME, 8: rp.DIFFERENT}
    assert rp.largest_n(verdicts, [rp.SAME]) == 2
    assert rp.largest_n(verdicts, [rp.SAME, rp.CANNOT_TELL]) == 6


def test_tolerance_overrides_are_checked():
    assert rp.tolerances_with({"diffusion": 0.1})["diffusion"].value == 0.1
    with pytest.raises(DataError, match="unknown observable 'difusion'"):
        rp.tolerances_with({"difusion": 0.1})
    with pytest.raises(DataError, match="positive number"):
        rp.tolerances_with({"diffusion": -1.0})


# ---- aggregation of repeated comparisons (compare --repeats) ----------------
def fake_repeat(rng, shift_by_n: dict, noise=0.2, unstable_n=()):
    """A compare.json of one repeat: the temperature of H at 300 K plus a known
    shift for each n (and noise); the baseline and the pair at n = 1 agree."""
    def run(n, shift):
        r = {"n_inner": n, "speedup": 1.0 + n, "observables": {"temperature H": 300.0 + shift + rng.normal(0, noise)}}
        if n in unstable_n:
            r.update(unstable="blew up", reasons=["unstable after 0.1 ps: blew up"], observables=None)
        return r
    return {"system_kind": "molecule", "baseline": {"ns_per_day": 1.0, "observables": {"temperature H": 300.0}},
            "runs": [run(n, s) for n, s in sorted(shift_by_n.items())]}


def test_aggregate_separates_the_integrators_error_from_the_models():
    from mtsmlip.compare_repeats import aggregate, format_table

    rng = np.random.default_rng(5)
    shifts = {1: 10.0, 2: 10.0, 4: 10.5, 8: 25.0}  # the model is off by 10 K; n = 8 heats H by 15 K more
    result = aggregate([fake_repeat(rng, shifts) for _ in range(4)])
    assert result["model_error"]["dynamics"] == rp.DIFFERENT  # 10 K > 1 % of 300 K
    by_n = {c["n_inner"]: c for c in result["integrator_error"]}
    assert by_n[2]["dynamics"] == rp.SAME and by_n[4]["dynamics"] == rp.SAME
    assert by_n[8]["dynamics"] == rp.DIFFERENT
    assert result["largest_n"]["dynamics_same"] == 4
    assert by_n[8]["differences"][0]["difference"]["mean"] == pytest.approx(15.0, abs=1.0)
    assert by_n[4]["speedup"]["mean"] == pytest.approx(5.0)
    table = format_table(result)
    assert "pair n=1 − baseline" in table and "n=8 − pair n=1" in table and "DIFFERENT" in table


def test_aggregate_fails_an_n_that_blew_up_in_any_repeat():
    from mtsmlip.compare_repeats import aggregate

    rng = np.random.default_rng(6)
    shifts = {1: 0.0, 2: 0.0, 4: 0.0}
    result = aggregate([fake_repeat(rng, shifts), fake_repeat(rng, shifts, unstable_n=(4,)), fake_repeat(rng, shifts)])
    by_n = {c["n_inner"]: c for c in result["integrator_error"]}
    assert by_n[4]["dynamics"] == rp.DIFFERENT and by_n[4]["unstable"][0].startswith("repeat 2")
    assert result["largest_n"]["dynamics_not_different"] == 2


def test_a_blow_up_of_the_pair_at_n_1_is_the_models_failure_not_the_integrators():
    from mtsmlip.compare_repeats import aggregate

    rng = np.random.default_rng(8)
    shifts = {1: 0.0, 2: 0.0}
    result = aggregate([fake_repeat(rng, shifts), fake_repeat(rng, shifts, unstable_n=(1,)), fake_repeat(rng, shifts),
                        fake_repeat(rng, shifts)])
    assert result["model_error"]["dynamics"] == rp.DIFFERENT  # the pair blew up against a stable baseline
    n2 = result["integrator_error"][0]
    assert n2["unstable"] == [] and n2["reference_unstable"][0].startswith("repeat 2")
    assert n2["differences"][0]["difference"]["repeats"] == 3  # that repeat left out, the other three compared


def test_an_observable_missing_in_a_repeat_is_compared_where_it_exists():
    runs = [{"temperature H": 300.1, "diffusion O": 0.21}, {"temperature H": 299.9}, {"temperature H": 300.0,
                                                                                     "diffusion O": 0.2}]
    refs = [{"temperature H": 300.0, "diffusion O": 0.2}] * 3
    found = {d.observable: d for d in rp.differences(runs, refs)}
    assert found["diffusion O"].difference.repeats == 2 and found["temperature H"].difference.repeats == 3


def test_repeats_to_settle_uses_the_t_quantile_of_the_new_count():
    """K = 4, spread s, margin 0.8 s: the smallest K' with t(K'-1) s / sqrt(K') < 0.8 s."""
    spread, k = 1.0, 4
    half = rp.t_quantile(k) * spread / math.sqrt(k)
    interval = rp.Interval(1.0 - 0.8 * spread, half, k)  # mean 0.8 s inside a bound of 1.0
    needed = rp.repeats_to_settle(interval, 1.0, spread)
    assert rp.t_quantile(needed) / math.sqrt(needed) < 0.8 <= rp.t_quantile(needed - 1) / math.sqrt(needed - 1)


def test_aggregate_needs_the_pair_at_n_1():
    from mtsmlip.compare_repeats import aggregate

    with pytest.raises(DataError, match="n = 1"):
        aggregate([fake_repeat(np.random.default_rng(7), {2: 0.0})])


def test_a_repeat_whose_baseline_blows_up_is_left_out_and_not_replayed(tmp_path, monkeypatch):
    """Repeats 1, 3 and 4 run; repeat 2's baseline blows up: the comparison is
    made from the other three, says so, and a rerun does not run repeat 2 again."""
    import mtsmlip.compare_repeats as cr
    from mtsmlip.compare import CompareSettings
    from mtsmlip.md.safety import MDInstability

    calls = []

    def fake_compare(model_dir, structure_path, cfg, out, progress_bar=True, teacher=None):
        k = 1 + (cfg.seed - 0) // cr.SEED_STRIDE
        calls.append(k)
        if k == 2:
            raise MDInstability("the baseline run stopped: atoms 3 and 4 at 0.2 A")
        return fake_repeat(np.random.default_rng(k), {1: 0.0, 2: 0.0})

    water = tmp_path / "box.extxyz"
    from tests.systems import small_water_box
    import ase.io
    ase.io.write(water, small_water_box())
    monkeypatch.setattr(cr, "compare", fake_compare)
    cfg = CompareSettings(ps=0.01, n_inner=(2,))
    result = cr.compare_repeated("unused", water, cfg, tmp_path / "out", 4)
    assert calls == [1, 2, 3, 4]
    assert result["repeats"] == 3 and result["per_repeat"] == ["repeat-1", "repeat-3", "repeat-4"]
    assert "repeat 2" in result["left_out"][0] and "left out" in (tmp_path / "out" / "report.md").read_text()
    calls.clear()
    cr.compare_repeated("unused", water, cfg, tmp_path / "out", 4)
    assert calls == [1, 3, 4]  # repeat 2 is not replayed


@pytest.mark.parametrize("asked, judged_as", [("auto", ["auto", "liquid", "liquid"]),
                                              ("crystal", ["crystal", "crystal", "crystal"])])
def test_every_repeat_is_judged_as_the_kind_of_system_repeat_1_found(tmp_path, monkeypatch, asked, judged_as):
    """Water in 1.5 ps runs moved 0.8-2.6 A^2: decided per repeat, two of four
    were once called crystals and judged by other observables than the rest."""
    import ase.io

    import mtsmlip.compare_repeats as cr
    from mtsmlip.compare import CompareSettings
    from tests.systems import small_water_box

    systems = []

    def fake_compare(model_dir, structure_path, cfg, out, progress_bar=True, teacher=None):
        systems.append(cfg.system)
        k = 1 + cfg.seed // cr.SEED_STRIDE
        return {**fake_repeat(np.random.default_rng(k), {1: 0.0, 2: 0.0}),
                "system_kind": "liquid" if cfg.system == "auto" else cfg.system}

    water = tmp_path / "box.extxyz"
    ase.io.write(water, small_water_box())
    monkeypatch.setattr(cr, "compare", fake_compare)
    cr.compare_repeated("unused", water, CompareSettings(ps=0.01, n_inner=(2,), system=asked), tmp_path / "out", 3)
    assert systems == judged_as


def test_a_slowly_diffusing_liquid_is_mobile_and_a_crystal_near_melting_is_not():
    from mtsmlip.analysis import mobile_species

    rng = np.random.default_rng(1)
    n_frames, dt_ps = 300, 0.005  # 1.5 ps
    hot_crystal = rng.uniform(0, 10, (64, 3)) + rng.normal(0, np.sqrt(0.03), (n_frames, 64, 3))  # |dx|^2 ~ 0.18 A^2
    steps = rng.normal(0, np.sqrt(2 * 0.1 * dt_ps), (n_frames, 64, 3))  # D = 0.1 A^2/ps: 0.9 A^2 in 1.5 ps
    slow_liquid = rng.uniform(0, 10, (64, 3)) + np.cumsum(steps, axis=0)
    assert mobile_species(np.concatenate([hot_crystal, slow_liquid], axis=1), ["Mo"] * 64 + ["O"] * 64) == ["O"]


def test_copies_in_one_engine_that_blew_up_are_reported_as_one_event():
    """Replicas share one engine: a blow-up of one copy stops all of them, so the
    report names it once, not once per copy as if each had blown up."""
    from mtsmlip.compare_repeats import aggregate, format_table

    rng = np.random.default_rng(9)
    shifts = {1: 0.0, 2: 0.0, 8: 0.0}
    copies = [{**fake_repeat(rng, shifts, unstable_n=(8,)), "replica": k} for k in range(4)]
    result = aggregate(copies)
    n8 = {c["n_inner"]: c for c in result["integrator_error"]}[8]
    assert n8["dynamics"] == rp.DIFFERENT
    assert n8["unstable"] == ["all 4 copies (one engine): unstable after 0.1 ps: blew up"]
    assert format_table(result).count("n = 8 blew up") == 1
    # independent repeats keep one line each
    separate = aggregate([fake_repeat(rng, shifts, unstable_n=(8,)) for _ in range(3)])
    assert len({c["n_inner"]: c for c in separate["integrator_error"]}[8]["unstable"]) == 3

"""Distillation (`mtsmlip distill`): a teacher kept unchanged, a fast model
trained on its labels, and the correction teacher − fast as the slow force.

The teacher here is ASE's EMT (an external calculator, named as a spec) on tiny
water boxes; the fast model is the tiny float64 Allegro of the training tests."""

import functools
import sys
import types

import numpy as np
import pytest
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mtsmlip.forces import md_providers
import mtsmlip
from mtsmlip import distill as distill_mod
from mtsmlip import training
from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.forces import zero_forces
from mtsmlip.md.respa import initial_state, respa_step
from mtsmlip.forces import CalculatorTensorForces, CorrectionForces, RememberLast
from mtsmlip.md.thermostats import NVE
from tests.systems import small_water_box
from tests.training_helpers import data_file, workspace, write_config, write_frames, labelled_frames

EMT_SPEC = "ase.calculators.emt:EMT"


def _config(**changes):
    return training.load_config(write_config(workspace() / "distill.yaml", **changes))


@functools.lru_cache(maxsize=1)
def distilled_dir():
    """A tiny pair distilled from EMT on the EMT-labelled boxes (2 epochs)."""
    out = workspace() / "distilled"
    distill_mod.distill(EMT_SPEC, out, _config(), data_path=data_file(), progress=False)
    return out


def _positions(atoms):
    return torch.tensor(atoms.positions, dtype=torch.float64)


def test_fast_plus_correction_is_the_teacher_to_float_precision():
    pair = mtsmlip.load(distilled_dir(), teacher=EMT_SPEC)
    atoms = small_water_box(seed=3)
    fast, slow = md_providers(pair, atoms)
    teacher, _ = md_providers(pair, atoms, baseline=True)
    x = _positions(atoms)
    (e_fast, f_fast), (e_slow, f_slow), (e_teacher, f_teacher) = fast(x), slow(x), teacher(x)
    assert float(f_slow.abs().max()) > 0.1  # the correction is not nothing: the fast model is not the teacher
    torch.testing.assert_close(f_fast + f_slow, f_teacher, rtol=0, atol=1e-12)
    assert float(e_fast + e_slow) == pytest.approx(float(e_teacher), abs=1e-10)
    reference = atoms.copy()
    reference.calc = EMT()
    np.testing.assert_allclose(f_teacher.numpy(), reference.get_forces(), atol=1e-12)


def test_correction_reuses_the_fast_call_at_the_same_positions():
    calls = {"fast": 0}

    def fast(x):
        calls["fast"] += 1
        return x.sum(), -x

    remembered = RememberLast(fast)
    correction = CorrectionForces(lambda x: (2 * x.sum(), -3 * x), remembered)
    x = torch.ones(4, 3, dtype=torch.float64)
    state = initial_state(x, torch.zeros_like(x), torch.ones(4, 1, dtype=torch.float64), remembered, correction)
    respa_step(state, remembered, correction, 0.1, 4, NVE())
    assert calls["fast"] == 1 + 4  # one per inner step and the start; never again for the correction
    torch.testing.assert_close(correction(x.clone())[1], -2 * x)  # other positions: evaluated afresh


def test_respa_at_n1_with_the_correction_is_velocity_verlet_on_the_teacher():
    pair = mtsmlip.load(distilled_dir(), teacher=EMT_SPEC)
    atoms = small_water_box(seed=4, momenta=True)
    x, p = _positions(atoms), torch.tensor(atoms.get_momenta(), dtype=torch.float64)
    m = torch.tensor(atoms.get_masses(), dtype=torch.float64)[:, None]
    fast, slow = md_providers(pair, atoms)
    teacher = CalculatorTensorForces(atoms, EMT())
    mts, verlet = initial_state(x, p, m, fast, slow), initial_state(x, p, m, teacher, zero_forces)
    for _ in range(20):
        mts = respa_step(mts, fast, slow, 0.02, 1, NVE())
        verlet = respa_step(verlet, teacher, zero_forces, 0.02, 1, NVE())
    torch.testing.assert_close(mts.positions, verlet.positions, rtol=0, atol=1e-10)
    torch.testing.assert_close(mts.momenta, verlet.momenta, rtol=0, atol=1e-10)


def test_manifest_records_the_teacher_and_the_split_of_the_data_file():
    manifest = mtsmlip.load(distilled_dir(), teacher=EMT_SPEC).manifest
    assert manifest["kind"] == "distilled"
    assert manifest["teacher"]["spec"] == EMT_SPEC and manifest["teacher"]["kind"] == "ase-calculator"
    assert manifest["teacher"]["package"]["ase"]
    assert manifest["data"]["n_frames"] == 16 and len(manifest["split"]["train"]) == 10
    assert set(manifest["split"]["test"]).isdisjoint(manifest["split"]["train"] + manifest["split"]["val"])


def test_an_external_teacher_is_built_only_from_the_users_spec(capsys):
    with pytest.raises(DataError, match="--teacher 'ase.calculators.emt:EMT'"):
        mtsmlip.load(distilled_dir())
    with pytest.raises(DataError, match="not --teacher"):
        mtsmlip.load(distilled_dir(), teacher="ase.calculators.lj:LennardJones")
    assert main(["eval", "--model", str(distilled_dir()), "--data", str(data_file()), "--split", "test",
                 "--teacher", EMT_SPEC, "--json", "--out", str(workspace() / "distilled-eval")]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["total"]["force_mae_meV_per_A"] == pytest.approx(report["baseline"]["force_mae_meV_per_A"], abs=1e-6)
    assert report["baseline"]["force_mae_meV_per_A"] < 1e-3  # the data are EMT's own labels (as extxyz writes them)


def test_a_teacher_from_a_model_directory_is_copied_as_the_baseline(tmp_path):
    from tests.systems import write_tiny_pair

    teacher_dir = write_tiny_pair(tmp_path / "teacher")
    frames = labelled_frames(16)
    out = tmp_path / "distilled"
    distill_mod.distill(str(teacher_dir), out, _config(epochs=1), data_path=write_frames(tmp_path / "d.extxyz", frames),
                        progress=False)
    pair = mtsmlip.load(out)  # no --teacher needed: the teacher is a model file in the directory
    teacher = mtsmlip.load(teacher_dir)
    atoms = small_water_box(seed=5)
    x = _positions(atoms)
    f_base = md_providers(pair, atoms, baseline=True)[0](x)[1]
    torch.testing.assert_close(f_base, md_providers(teacher, atoms, baseline=True)[0](x)[1], rtol=0, atol=0)
    fast, slow = md_providers(pair, atoms)
    torch.testing.assert_close(fast(x)[1] + slow(x)[1], f_base, rtol=0, atol=1e-12)
    labels = mtsmlip.data.frames_of(out / "teacher_labels.extxyz")
    a = labels[0].copy()
    a.calc = teacher.baseline
    np.testing.assert_allclose(labels[0].arrays["forces"], a.get_forces(), atol=1e-6)


class _Interrupt(Exception):
    pass


def _interrupt_at_epoch(epoch):
    import lightning

    class StopHere(lightning.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == epoch:
                raise _Interrupt()

    return StopHere()


def test_interrupted_distill_resumes_to_the_same_weights(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(_Interrupt):
        distill_mod.distill(EMT_SPEC, out, _config(), data_path=data_file(), progress=False,
                            callbacks=[_interrupt_at_epoch(1)])
    assert (out / "checkpoints" / "distill" / "last.ckpt").is_file()
    with pytest.raises(DataError, match="--resume"):
        distill_mod.distill(EMT_SPEC, out, _config(), data_path=data_file(), progress=False)
    with pytest.raises(DataError, match="different teacher"):
        distill_mod.distill("ase.calculators.lj:LennardJones", out, _config(), data_path=data_file(), resume=True)
    config = workspace() / "distill.yaml"
    capsys.readouterr()
    assert main(["distill", "--teacher", EMT_SPEC, "--data", str(data_file()), "--config", str(config),
                 "--out", str(out), "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "[distill] epoch 2/2" in printed and "[distill] epoch 1/2" not in printed
    resumed = mtsmlip.load(out, teacher=EMT_SPEC).models["fast"].module.state_dict()
    reference = mtsmlip.load(distilled_dir(), teacher=EMT_SPEC).models["fast"].module.state_dict()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-12, msg=key)


def test_teacher_md_frames_carry_the_teachers_labels(tmp_path):
    from mtsmlip.teacher import teacher_md_frames

    frames = teacher_md_frames(EMT(), small_water_box(seed=1), [300.0, 450.0], 2, 0.25, 3, seed=0,
                               where="box", progress=False)
    assert len(frames) == 4
    assert not np.allclose(frames[0].positions, frames[1].positions)  # the MD moved
    for atoms in frames:
        fresh = atoms.copy()
        fresh.calc = EMT()
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(), atol=1e-12)


# ------------------------------------------------------------------ bad teachers
class NaNCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float("nan"), "forces": np.zeros((len(atoms), 3))}


@pytest.fixture
def nan_module(monkeypatch):
    module = types.ModuleType("nan_teacher")
    module.NaNCalculator = NaNCalculator
    monkeypatch.setitem(sys.modules, "nan_teacher", module)
    return "nan_teacher:NaNCalculator"


@pytest.mark.parametrize("spec, message", [
    ("no_such_package_xyz:Calc", "cannot import no_such_package_xyz"),
    ("ase.calculators.emt:NoSuchFactory", "has no callable 'NoSuchFactory'"),
    ('ase.calculators.emt:EMT:{"bad json', "not JSON"),
    ("ase.calculators.emt:EMT:[1, 2]", "must be a JSON object"),
    ("not a spec", "not an ASE calculator as module:factory"),
])
def test_a_teacher_that_cannot_be_built_is_named(tmp_path, capsys, spec, message):
    assert main(["distill", "--teacher", spec, "--data", str(data_file()), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_a_teacher_lacking_a_species_is_named(tmp_path):
    from ase.build import bulk

    silicon = bulk("Si", "diamond", 5.43, cubic=True)
    silicon.calc = EMT()  # only so that the frame is "labelled"; EMT has no Si
    frames = [silicon]
    path = tmp_path / "si.extxyz"
    from ase.calculators.singlepoint import SinglePointCalculator

    silicon.calc = SinglePointCalculator(silicon, energy=0.0, forces=np.zeros((8, 3)))
    write_frames(path, frames * 4)
    with pytest.raises(DataError, match=r"frame 0 \(species \['Si'\]\): the teacher failed .*No EMT-potential for Si"):
        distill_mod.distill(EMT_SPEC, tmp_path / "o", _config(train_frames=2, val_frames=1), data_path=path,
                            progress=False)


def test_a_teacher_returning_nan_is_named(tmp_path, nan_module):
    with pytest.raises(DataError, match=r"frame \d+, field 'energy': the teacher returned nan"):
        distill_mod.distill(nan_module, tmp_path / "o", _config(), data_path=data_file(), progress=False)


def test_a_teacher_file_that_is_not_a_model_is_named(tmp_path, capsys):
    junk = tmp_path / "junk.nequip.zip"
    junk.write_bytes(b"not a zip")
    assert main(["distill", "--teacher", str(junk), "--data", str(data_file()), "--out", str(tmp_path / "o")]) == 2
    assert "nequip could not load this model" in capsys.readouterr().err
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    assert main(["distill", "--teacher", str(other), "--data", str(data_file()), "--out", str(tmp_path / "o")]) == 2
    assert "not a nequip model" in capsys.readouterr().err


def test_distill_needs_configurations(tmp_path, capsys):
    assert main(["distill", "--teacher", EMT_SPEC, "--out", str(tmp_path / "o")]) == 2
    assert "--data FILE" in capsys.readouterr().err


class Float32Only(Calculator):
    """Like SevenNet: fails when torch's default dtype is not float32."""

    implemented_properties = ["energy", "forces"]

    def __init__(self):
        super().__init__()
        self._check()

    def _check(self):
        if torch.get_default_dtype() != torch.float32:
            raise RuntimeError("Float did not match Double")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self._check()
        self.results = {"energy": 0.0, "forces": np.zeros((len(atoms), 3))}


def test_a_foreign_calculator_runs_with_torchs_standard_dtype_after_nequip_set_float64(monkeypatch):
    from mtsmlip.models import ensure_global_state
    from mtsmlip.teacher import external_calculator

    module = types.ModuleType("float32_teacher")
    module.Float32Only = Float32Only
    monkeypatch.setitem(sys.modules, "float32_teacher", module)
    ensure_global_state()  # what loading any mtsmlip model does first
    before = torch.get_default_dtype()
    atoms = small_water_box(seed=2)
    atoms.calc = external_calculator("float32_teacher:Float32Only")
    assert atoms.get_potential_energy() == 0.0
    assert torch.get_default_dtype() == before  # nequip's setting is restored for our models

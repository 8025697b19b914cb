"""i-PI with trained pairs: `mtsmlip serve` as i-PI's force clients and
`mtsmlip ipi-input` runs (run.sh), against mtsmlip's own engine."""

import re
import socket
import subprocess
import threading
import uuid

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.socketio import SocketServer

from mtsmlip.forces import md_providers
import mtsmlip
from mtsmlip.cli import main
from mtsmlip.errors import DataError
from mtsmlip.integrations.ipi_client import Address, ForceServer, part_forces, serve_until_done
from mtsmlip.md.engine import Engine
from mtsmlip.md.settings import RunSettings
from tests.systems import small_water_box
from tests.training_helpers import trained_dir

# a short inner step: the tiny trained pair has stiff forces, and its trajectories part
# quickly; at 0.25 fs i-PI and the engine agree to ~5e-8 Å, velocity Verlet is 0.03 Å away
INNER_FS, N_INNER, OUTER_STEPS = 0.25, 4, 20


@pytest.fixture(scope="module")
def trained():
    """A trained float64 pair (the format `mtsmlip train` writes and mtsmlip ships)."""
    return trained_dir()


@pytest.fixture()
def start(tmp_path):
    atoms = small_water_box(seed=5)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    path = tmp_path / "start.extxyz"
    ase.io.write(path, atoms)
    return atoms, path


def ipi_run(trained, structure, out, *options):
    assert main(["ipi-input", "--model", str(trained), "--structure", str(structure), "--out", str(out),
                 *options]) == 0
    done = subprocess.run(["bash", str(out / "run.sh")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + (out / "ipi.log").read_text()[-2000:]
    return out


def served_calls(out, name):
    text = (out / f"serve-{name}-0.log").read_text()
    return int(re.search(r"(\d+) force calls served", text).group(1))


def engine_positions(trained, atoms, n_inner, steps, pair_as_one=False):
    models = mtsmlip.load(trained)
    fast, slow = md_providers(models, atoms)
    if pair_as_one:  # velocity Verlet at the inner step on fast + slow
        from mtsmlip.forces import SumForces
        from mtsmlip.forces import zero_forces
        fast, slow = SumForces(fast, slow), zero_forces
    engine = Engine(atoms.copy(), fast, slow, RunSettings(timestep_fs=INNER_FS, n_inner=n_inner))
    engine.run(steps, progress=False)
    return engine.state.positions.numpy()


def test_ipi_mts_reaches_the_engines_positions(trained, start, tmp_path):
    atoms, structure = start
    out = ipi_run(trained, structure, tmp_path / "ipi", "--n-inner", str(N_INNER), "--timestep-fs", str(INNER_FS),
                  "--steps", str(OUTER_STEPS), "--stride", str(OUTER_STEPS))
    ipi = ase.io.read(out / "simulation.pos_0.extxyz", index=-1).positions
    ours = engine_positions(trained, atoms, N_INNER, OUTER_STEPS)
    assert np.abs(ours - atoms.positions).max() > 0.05  # the atoms really moved
    np.testing.assert_allclose(ipi, ours, atol=1e-6, rtol=0)
    # the agreement is specific: velocity Verlet at the inner step lands elsewhere
    verlet = engine_positions(trained, atoms, 1, OUTER_STEPS * N_INNER, pair_as_one=True)
    assert np.abs(verlet - ipi).max() > 1e-5
    # one fast call per inner step and one slow call per outer step (+ the first)
    assert served_calls(out, "fast") == 1 + OUTER_STEPS * N_INNER
    assert served_calls(out, "slow") == 1 + OUTER_STEPS


def test_path_integrals_evaluate_the_slow_force_on_contracted_beads(trained, start, tmp_path):
    _atoms, structure = start
    beads, contracted, steps, n = 4, 2, 3, 2
    out = ipi_run(trained, structure, tmp_path / "pimd", "--beads", str(beads), "--contract-beads", str(contracted),
                  "--n-inner", str(n), "--steps", str(steps), "--stride", "1", "--temperature-K", "300",
                  "--thermostat", "bussi")
    assert 'nbeads="2"' in (out / "input.xml").read_text() and "pile_g" in (out / "input.xml").read_text()
    assert served_calls(out, "slow") == contracted * (1 + steps)
    assert served_calls(out, "fast") == beads * (1 + steps * n)
    rows = np.loadtxt(out / "simulation.out", ndmin=2)
    assert rows.shape == (steps + 1, 8)  # ..., kinetic_cv(H), kinetic_cv(O)
    kinetic_cv_H = rows[:, 6]
    assert np.all(np.isfinite(kinetic_cv_H)) and np.all(kinetic_cv_H != 0)


def test_a_molecule_without_a_cell_runs_in_ipi(trained, tmp_path):
    """i-PI refuses a zero cell: an isolated structure gets a box, keeps pbc off."""
    water = molecule("H2O")
    water.rattle(0.05, seed=1)
    ase.io.write(tmp_path / "water.xyz", water)
    out = ipi_run(trained, tmp_path / "water.xyz", tmp_path / "mol", "--steps", "3", "--n-inner", "2")
    init = ase.io.read(out / "init.extxyz")
    assert not init.pbc.any() and init.cell.rank == 3
    np.testing.assert_allclose(init.positions, water.positions)  # not moved
    assert served_calls(out, "fast") == 1 + 3 * 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_ipi_over_tcp_sockets(trained, start, tmp_path):
    """inet addresses (how clients on other machines connect), here on localhost."""
    _atoms, structure = start
    fast, slow = free_port(), free_port()
    while slow == fast:  # the system may offer a just-freed port again
        slow = free_port()
    out = ipi_run(trained, structure, tmp_path / "tcp", "--steps", "3", "--n-inner", "2",
                  "--fast-address", f"localhost:{fast}", "--slow-address", f"localhost:{slow}")
    assert f"<port> {fast} </port>" in (out / "input.xml").read_text()
    assert served_calls(out, "fast") == 1 + 3 * 2 and served_calls(out, "slow") == 1 + 3


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_serve_reconnects_and_answers_in_ipi_units(trained, kind):
    """A server that goes away without EXIT (i-PI restarting) is waited for;
    energies, forces and the virial cross the socket in i-PI's units and come
    back as the model's own (ASE's server converts them back). Over a unix
    socket and over TCP (how clients on other machines connect)."""
    models = mtsmlip.load(trained)
    atoms = small_water_box(seed=2)
    server = ForceServer(lambda a: part_forces(models, "total", a), atoms)
    if kind == "unix":
        where = {"unixsocket": f"mtsmlip-test-{uuid.uuid4().hex[:8]}"}
        address = Address(unix=where["unixsocket"])
    else:
        where = {"port": free_port()}
        address = Address(host="localhost", port=where["port"])
    done = {}
    thread = threading.Thread(target=lambda: done.update(calls=serve_until_done(server, address, 30)))
    moved = atoms.copy()
    moved.rattle(0.02, seed=1)
    results = []
    for k, structure in enumerate((atoms, moved)):
        with SocketServer(**where, timeout=60) as ipi:
            if k == 0:
                thread.start()
            results.append(ipi.calculate(structure))
            if k == 1:
                ipi.protocol.end()  # EXIT: the client stops
    thread.join(timeout=60)
    assert done["calls"] == 2
    for structure, got in zip((atoms, moved), results):
        structure.calc = models.calculator("total")
        assert got["energy"] == pytest.approx(structure.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(got["forces"], structure.get_forces(), atol=1e-9)
        virial = -structure.get_stress(voigt=False) * structure.get_volume()
        np.testing.assert_allclose(got["virial"], virial, atol=1e-9)


# ---- bad input ------------------------------------------------------------------------
def test_unknown_part_is_named(trained, start, capsys):
    _atoms, structure = start
    assert main(["serve", "--model", str(trained), "--part", "medium", "--address", "unix:x",
                 "--structure", str(structure)]) == 2
    assert "--part" in capsys.readouterr().err
    with pytest.raises(DataError, match="'medium'.*fast, slow, total, baseline"):
        part_forces(mtsmlip.load(trained), "medium", small_water_box())


@pytest.mark.parametrize("text", ["water", "unix:", "unix:a/b", "localhost:0", "localhost:99999", ":31415",
                                  "localhost:port"])
def test_bad_addresses_are_named(text):
    with pytest.raises(DataError, match=re.escape(repr(text))):
        Address.parse(text)


def test_an_ipi_that_never_listens_is_a_named_timeout(trained, start, capsys):
    _atoms, structure = start
    assert main(["serve", "--model", str(trained), "--part", "fast", "--address",
                 f"unix:nobody-{uuid.uuid4().hex[:8]}", "--structure", str(structure), "--wait-s", "0.5"]) == 2
    assert "no i-PI server answered within 0.5 s" in capsys.readouterr().err


def test_a_port_in_use_is_refused(trained, start, tmp_path, capsys):
    _atoms, structure = start
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["ipi-input", "--model", str(trained), "--structure", str(structure), "--out",
                     str(tmp_path / "x"), "--fast-address", f"localhost:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"localhost:{port}: something already listens there" in err and "--fast-address" in err
    assert not (tmp_path / "x").exists()  # nothing written


def test_species_the_model_lacks_are_named(trained, tmp_path, capsys):
    copper = tmp_path / "cu.extxyz"
    ase.io.write(copper, bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2))
    for command in (["ipi-input", "--out", str(tmp_path / "x")],
                    ["serve", "--part", "fast", "--address", "unix:never", "--wait-s", "0.1"]):
        assert main([*command, "--model", str(trained), "--structure", str(copper)]) == 2
        assert "Cu" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--beads", "4", "--contract-beads", "3", "--temperature-K", "300"], "must divide --beads"),
    (["--beads", "2", "--contract-beads", "4", "--temperature-K", "300"], "between 1 and --beads"),
    (["--beads", "4"], "need --temperature-K"),
    (["--thermostat", "bussi"], "needs --temperature-K"),
    (["--baseline", "--n-inner", "4"], "leave --n-inner at 1"),
    (["--fast-address", "unix:same", "--slow-address", "unix:same"], "different addresses"),
    (["--baseline", "--slow-address", "unix:other"], "one force field"),
])
def test_inconsistent_ipi_runs_are_refused(trained, start, tmp_path, capsys, options, message):
    _atoms, structure = start
    assert main(["ipi-input", "--model", str(trained), "--structure", str(structure), "--out",
                 str(tmp_path / "x"), *options]) == 2
    assert message in capsys.readouterr().err


def test_a_baseline_run_without_n_inner_is_velocity_verlet_and_mts_defaults_to_four(trained, start, tmp_path):
    _atoms, structure = start
    for options, name in ((["--baseline"], "baseline"), ([], "mts")):
        assert main(["ipi-input", "--model", str(trained), "--structure", str(structure), "--out",
                     str(tmp_path / name), *options]) == 0
    baseline, mts = ((tmp_path / name / "input.xml").read_text() for name in ("baseline", "mts"))
    assert "nmts" not in baseline and baseline.count("<ffsocket") == 1
    assert re.search(r"<nmts>\s*\[1, 4\]\s*</nmts>", mts) and mts.count("<ffsocket") == 2


def test_force_server_rebuilds_for_a_new_cell(trained):
    """NPT in i-PI changes the cell: the neighbour lists follow it."""
    models = mtsmlip.load(trained)
    atoms = small_water_box(seed=4)
    server = ForceServer(lambda a: part_forces(models, "fast", a), atoms)
    wider = atoms.copy()
    wider.set_cell(atoms.cell.array * 1.05, scale_atoms=True)
    energy, forces, virial = server.evaluate(wider.cell.array, wider.positions)
    wider.calc = models.calculator("fast")
    assert energy == pytest.approx(wider.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(forces, wider.get_forces(), atol=1e-9)
    np.testing.assert_allclose(virial, -wider.get_stress(voigt=False) * wider.get_volume(), atol=1e-9)


def test_a_baseline_run_takes_its_address_from_fast_address():
    from argparse import Namespace

    from mtsmlip.integrations.ipi_input import addresses_from

    args = Namespace(baseline=True, fast_address="localhost:4000", slow_address=None)
    assert addresses_from(args) == {"baseline": Address(host="localhost", port=4000)}
    args = Namespace(baseline=False, fast_address="localhost:4000", slow_address="unix:s")
    assert addresses_from(args) == {"fast": Address(host="localhost", port=4000), "slow": Address(unix="s")}


def test_the_total_has_a_virial_only_where_both_parts_have_one(trained):
    """An external teacher has no virial: fast + (teacher − fast) then offers
    none either, so serve warns instead of sending the fast part's alone."""
    from mtsmlip.forces import SumForces

    models = mtsmlip.load(trained)
    fast, slow = md_providers(models, small_water_box())
    assert hasattr(SumForces(fast, slow), "virial_eV")
    no_virial = lambda positions: slow(positions)  # noqa: E731 (a provider without one)
    assert not hasattr(SumForces(fast, no_virial), "virial_eV")

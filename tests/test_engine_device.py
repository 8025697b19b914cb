"""The engine's loop is clean on the device: nothing is read back from it while
a batch of steps is integrated, a batch that outgrew a neighbour list is done
again, and the result is bit for bit what checking at every step gives."""

import contextlib

import pytest
import torch

from mtsmlip.forces import ModelForces, md_providers
from mtsmlip.forces.model import default_edge_filter
from mtsmlip.md import Engine, MDInstability, RunSettings
from mtsmlip.md import engine as engine_mod
from mtsmlip.md.engine import cuda_syncs_in_a_batch
from mtsmlip.errors import DataError
from tests.systems import small_water_box, write_tiny_pair

# the ways a torch tensor hands a value to the host (each waits for a GPU)
READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")
# what else waits for a GPU: a result whose size depends on its values (nonzero), and
# host data copied to the device (from pageable host memory, the copy blocks the host)
WAITS = {torch.Tensor: ("nonzero",), torch: ("nonzero", "from_numpy", "as_tensor", "tensor")}


@contextlib.contextmanager
def counted_reads():
    """Count every read of a tensor's value by the host, and every call that
    waits for a GPU (:data:`WAITS`); {'n': count, 'reads': reads alone, 'calls': names}."""
    seen = {"n": 0, "reads": 0, "calls": []}
    hooked = [(torch.Tensor, name) for name in READS] + [(owner, n) for owner, names in WAITS.items() for n in names]
    saved = {(owner, name): getattr(owner, name) for owner, name in hooked}

    def counting(owner, name):
        def read(*args, **kwargs):
            seen["n"] += 1
            seen["reads"] += owner is torch.Tensor and name in READS
            seen["calls"].append(name)
            return saved[owner, name](*args, **kwargs)
        return read

    for owner, name in hooked:
        setattr(owner, name, counting(owner, name))
    try:
        yield seen
    finally:
        for (owner, name), method in saved.items():
            setattr(owner, name, method)


@pytest.fixture(scope="module")
def gentle(tmp_path_factory):
    """The tiny pair with gentle forces: short runs stay physical."""
    import mtsmlip

    return mtsmlip.load(write_tiny_pair(tmp_path_factory.mktemp("gentle") / "pair", energy_scale=0.02))


def engine_on(pair, settings, skin_A=1.0, seed=3, batch_inner_steps=None, kernels="auto", as_on_a_gpu=False):
    """kernels="torch": the providers' edge work in torch operations, as on a GPU
    (on the CPU, compiled loops read the positions' host memory). as_on_a_gpu:
    every path a GPU takes (torch edge work, no edge filter, the thermostats'
    device paths), on the CPU."""
    atoms = small_water_box(seed=1, momenta=True)
    fast, slow = md_providers(pair, atoms, settings.baseline, skin_A=skin_A)
    engine = Engine(atoms, fast, slow, settings, seed=seed)
    for nl in engine.neighbor_lists:
        nl.kernels = "torch" if as_on_a_gpu else kernels
        if as_on_a_gpu:
            nl.filter_edges = default_edge_filter(torch.device("cuda"))
    if as_on_a_gpu and hasattr(engine.thermostat, "on_device"):
        engine.thermostat.on_device = True
    if batch_inner_steps is not None:
        engine.batch_inner_steps = batch_inner_steps
    return engine


@pytest.mark.parametrize("thermostat", [None, "langevin", "bussi"])
def test_no_host_read_while_a_batch_is_integrated(gentle, monkeypatch, thermostat):
    """Every path a GPU takes, on the CPU: no read, no value-sized result
    (nonzero), no host data copied in, while a batch is integrated."""
    settings = RunSettings(0.5, 4, thermostat, 300.0 if thermostat else None)
    engine = engine_on(gentle, settings, as_on_a_gpu=True)
    engine.run(1, progress=False)  # first calls build the lists
    inside, integrate = [], Engine.integrate

    def integrate_counted(self, k):
        with counted_reads() as reads:
            result = integrate(self, k)
        inside.append((k, reads["n"]))
        return result

    monkeypatch.setattr(Engine, "integrate", integrate_counted)
    with counted_reads() as total:
        engine.run(12, progress=False)
    assert sum(k for k, _ in inside) >= 12 and all(n == 0 for _, n in inside), inside
    if thermostat == "langevin":
        assert engine.thermostat.device_generator is not None  # its noise was drawn by the device path
    batches = len(inside)
    assert batches <= 12 // (engine.batch_inner_steps // 4) + 2  # a few batches, not one per step
    # outside the batches: one read per batch (flags, lists), a few per list rebuild
    builds = sum(nl.n_builds for nl in engine.neighbor_lists)
    assert total["reads"] <= 2 * batches + 3 * builds, (total["calls"], batches, builds)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.set_sync_debug_mode)")
@pytest.mark.parametrize("thermostat", [None, "langevin", "bussi"])
def test_no_host_sync_while_a_batch_is_integrated_on_a_cuda_device(gentle, thermostat):
    """What the counter above cannot see (waits inside libraries), CUDA reports."""
    atoms = small_water_box(seed=1, momenta=True)
    fast, slow = md_providers(gentle, atoms, False, skin_A=1.0, device="cuda")
    engine = Engine(atoms, fast, slow, RunSettings(0.5, 4, thermostat, 300.0 if thermostat else None), seed=3,
                    device="cuda")
    engine.run(2, progress=False)  # lists built, generators seeded
    assert cuda_syncs_in_a_batch(engine, 4) == []


def test_the_cuda_sync_check_refuses_an_engine_off_cuda(gentle):
    with pytest.raises(DataError, match="cuda_syncs_in_a_batch: the engine runs on cpu, not a CUDA device"):
        cuda_syncs_in_a_batch(engine_on(gentle, RunSettings(0.5, 2)))


def test_the_counter_sees_what_a_gpu_waits_for(gentle):
    """The counter of the test above counts the edge filter's nonzero and the
    host's Langevin noise copied in, the CPU's paths."""
    engine = engine_on(gentle, RunSettings(0.5, 4, "langevin", 300.0), kernels="torch")
    engine.run(1, progress=False)
    with counted_reads() as seen:
        engine.integrate(1)
    assert "nonzero" in seen["calls"] and "from_numpy" in seen["calls"], seen["calls"]


def test_the_edge_filter_is_on_where_it_waits_for_nothing():
    assert default_edge_filter(torch.device("cpu")) and not default_edge_filter(torch.device("cuda"))


@pytest.mark.parametrize("as_on_a_gpu", [False, True])
def test_the_same_trajectory_whether_read_every_step_or_in_batches(gentle, as_on_a_gpu):
    """A tiny skin makes batches outgrow their lists: they are done again (the
    thermostat's random state with them, the device generator's too), and every
    state is bit for bit that of a run checked at every step. Without the edge
    filter (a GPU's path) the model's edges depend on when the list was built,
    so its sums round differently: the same states to float32 rounding (a
    random stream not restored would differ by the noise itself)."""
    settings = RunSettings(0.5, 2, "langevin", 300.0)
    step_by_step = engine_on(gentle, settings, skin_A=0.05, batch_inner_steps=1, as_on_a_gpu=as_on_a_gpu)
    batched = engine_on(gentle, settings, skin_A=0.05, batch_inner_steps=40, as_on_a_gpu=as_on_a_gpu)
    states = {}
    for name, engine in (("step", step_by_step), ("batch", batched)):
        seen = states.setdefault(name, [])
        engine.attach(lambda e, seen=seen: seen.append(e.state))
        engine.run(30, progress=False)
    assert batched.n_redone > 0  # the check below covers redone batches
    assert len(states["step"]) == len(states["batch"]) == 31
    for a, b in zip(states["step"], states["batch"]):
        for field in ("positions", "momenta", "forces_fast", "forces_slow"):
            if as_on_a_gpu:
                torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=1e-5, atol=1e-7)
            else:
                assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_a_flagged_step_inside_a_batch_stops_at_the_step_before_it(gentle):
    """The fast force turns to NaN at its 23rd call in the run (the first inner
    step of outer step 12 at n = 2, inside a batch of 20 outer steps): the run
    stops there, naming step 12, and the engine is back at step 11 with its good
    state, which every observer saw."""
    settings = RunSettings(0.5, 2)
    engine = engine_on(gentle, settings, batch_inner_steps=40)
    fast, calls = engine.fast, {"n": 0}

    def broken(positions):
        calls["n"] += 1
        energy, forces = fast(positions)
        return (energy, forces * float("nan")) if calls["n"] == 23 else (energy, forces)

    engine.fast = broken
    seen = []
    engine.attach(lambda e: seen.append(e.step))
    with pytest.raises(MDInstability, match=r"step 12: NaN or inf in positions.*Last good state: step 11"):
        engine.run(40, progress=False)
    assert engine.step == 11 and seen[-1] == 11
    assert torch.isfinite(engine.state.forces_fast).all()


def test_all_candidate_edges_give_the_same_forces_as_the_filtered_ones(pair):
    """Without filtering (no nonzero: no host sync on a GPU) the model gets every
    edge within r_max + skin; those beyond r_max contribute exactly nothing."""
    atoms = small_water_box(seed=2)
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    for name in ("fast", "slow", "baseline"):
        filtered = ModelForces(pair.models[name], atoms, skin_A=1.0)
        everything = ModelForces(pair.models[name], atoms, skin_A=1.0, filter_edges=False)
        (e1, f1), (e2, f2) = filtered(x), everything(x)
        assert everything.neighbors.edge_index.shape[1] > filtered.last_edges[0].shape[0]  # more edges went in
        torch.testing.assert_close(e2, e1, rtol=0, atol=1e-10)
        torch.testing.assert_close(f2, f1, rtol=0, atol=1e-10)
        assert float(everything.min_distance_A) == pytest.approx(float(filtered.min_distance_A))


def test_batches_are_short_enough_for_the_skin(gentle):
    """Water at 300 K with the default 1 Å skin: almost no batch is done again
    (the lists are rebuilt ahead of time, between batches)."""
    settings = RunSettings(0.5, 4, "langevin", 300.0)
    engine = engine_on(gentle, settings)
    engine.run(40, progress=False)
    batches = 40 // (engine_mod.BATCH_INNER_STEPS // 4)
    assert engine.n_redone <= max(1, batches // 10), (engine.n_redone, batches)


def test_an_observer_mid_batch_sees_the_thermostat_of_its_step(gentle):
    """What a restart keeps at step 3 of a batch (state and Langevin random
    state) continues to the same step 9 as the run that was not interrupted."""
    settings = RunSettings(0.5, 2, "langevin", 300.0)
    whole = engine_on(gentle, settings, batch_inner_steps=40)
    kept, at9 = {}, {}

    def keep(engine):
        if engine.step == 3:
            kept.update(state=engine.state, rng=engine.thermostat.get_state())
        if engine.step == 9:
            at9["state"] = engine.state

    whole.attach(keep)
    whole.run(12, progress=False)
    resumed = engine_on(gentle, settings, batch_inner_steps=40)
    resumed.restore(kept["state"], 3)
    resumed.thermostat.set_state(kept["rng"])
    resumed.run(6, progress=False)
    for field in ("positions", "momenta"):
        assert torch.equal(getattr(resumed.state, field), getattr(at9["state"], field)), field


def test_a_provider_that_raises_on_a_blown_up_state_still_stops_by_name(gentle):
    """An external calculator raises on NaN positions (vesin: 'non-finite
    coordinate'). The fast force turns to NaN at the last inner call of step 11;
    step 12 then hands it NaN positions. The batch breaks off there and the run
    stops naming step 11, as a check at every step would, not with the
    calculator's error."""
    settings = RunSettings(0.5, 2)
    engine = engine_on(gentle, settings, batch_inner_steps=40)
    fast, calls = engine.fast, {"n": 0}

    def fragile(positions):
        if not torch.isfinite(positions).all():
            raise RuntimeError("point 0 has non-finite coordinate")
        calls["n"] += 1
        energy, forces = fast(positions)
        return (energy, forces * float("nan")) if calls["n"] == 22 else (energy, forces)

    engine.fast = fragile
    with pytest.raises(MDInstability, match=r"step 11: NaN or inf in forces_fast.*Last good state: step 10"):
        engine.run(40, progress=False)
    assert engine.step == 10


@pytest.mark.parametrize("case", ["water box", "small triclinic cell", "isolated"])
def test_the_device_neighbour_list_is_the_numpy_one(case):
    """vesin's torch interface (the builder on a GPU, run here on the CPU) gives
    the same edges, in the same canonical order, with the same shift vectors as
    the numpy builder: a run builds the same lists on either, including a cell
    narrower than the cutoff (several images of one neighbour) and no cell."""
    import numpy as np
    from ase import Atoms

    from mtsmlip.forces.model import SkinNeighborList

    if case == "water box":
        atoms = small_water_box(seed=4)
    elif case == "small triclinic cell":
        rng = np.random.default_rng(0)
        cell = np.array([[2.9, 0.0, 0.0], [0.7, 3.1, 0.0], [-0.4, 0.5, 2.8]])
        atoms = Atoms("Mo3", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    else:
        atoms = small_water_box(seed=4)
        atoms.pbc, atoms.cell = False, None
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    lists = {b: SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, builder=b) for b in ("numpy", "torch")}
    for nl in lists.values():
        nl.build(x)
    numpy_list, torch_list = lists["numpy"], lists["torch"]
    assert numpy_list.edge_index.shape[1] > 0
    assert torch.equal(torch_list.edge_index, numpy_list.edge_index)
    assert torch.equal(torch_list.shift_vectors, numpy_list.shift_vectors)
    if case == "small triclinic cell":  # an atom meets images of itself and of its neighbours
        assert (numpy_list.edge_index[0] == numpy_list.edge_index[1]).any()
    # vesin's GPU code needs cells at least twice the cutoff wide: narrower ones are built from numpy
    assert numpy_list.wide_enough_for_device() == (case == "isolated")
    with pytest.raises(ValueError, match="builder"):
        SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, builder="gpu")


def test_bussi_on_the_device_rescales_as_on_the_host(gentle):
    """Bussi's device path (K a tensor, no host read) draws the same random
    numbers and gives the same trajectory, to rounding, as its host path."""
    states = {}
    for on_device in (False, True):
        engine = engine_on(gentle, RunSettings(0.5, 2, "bussi", 300.0, tau_fs=20.0))
        engine.thermostat.on_device = on_device
        seen = states.setdefault(on_device, [])
        engine.attach(lambda e, seen=seen: seen.append(e.state))
        engine.run(20, progress=False)
    assert len(states[True]) == len(states[False]) == 21
    for a, b in zip(states[False], states[True]):
        torch.testing.assert_close(b.momenta, a.momenta, rtol=1e-10, atol=1e-12)
        assert float(b.work_eV) == pytest.approx(float(a.work_eV), rel=1e-9, abs=1e-12)
    assert float(states[True][-1].work_eV) != 0.0  # the thermostat did work


@pytest.mark.parametrize("case", ["water box", "small triclinic cell", "isolated"])
@pytest.mark.parametrize("filter_edges", [True, False])
def test_the_compiled_edge_loops_give_the_torch_edges(case, filter_edges):
    """The CPU's compiled loops (mtsmlip.forces.cpu_kernels) hand the model the
    same edges and edge vectors, bit for bit, as the torch operations a GPU runs,
    including a cell narrower than the cutoff and atoms moved since the build."""
    import numpy as np
    from ase import Atoms

    from mtsmlip.forces.model import SkinNeighborList

    rng = np.random.default_rng(5)
    if case == "small triclinic cell":
        cell = np.array([[2.9, 0.0, 0.0], [0.7, 3.1, 0.0], [-0.4, 0.5, 2.8]])
        atoms = Atoms("Mo3", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    else:
        atoms = small_water_box(seed=4)
        if case == "isolated":
            atoms.pbc, atoms.cell = False, None
    built = torch.tensor(atoms.positions, dtype=torch.float64)
    moved = built + torch.from_numpy(rng.normal(scale=0.1, size=built.shape))
    lists = {k: SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, filter_edges, kernels=k)
             for k in ("compiled", "torch")}
    for nl in lists.values():
        nl.build(built)
    (index_c, vectors_c, shortest_c), (index_t, vectors_t, shortest_t) = (nl.edges(moved, 2.5) for nl in lists.values())
    assert index_t.shape[1] > 0
    assert (index_t.shape[1] < lists["torch"].edge_index.shape[1]) == filter_edges  # edges were dropped
    assert torch.equal(index_c, index_t) and torch.equal(vectors_c, vectors_t)
    assert float(shortest_c) == pytest.approx(float(shortest_t), rel=1e-15)
    assert float(vectors_t.norm(dim=1).min()) == pytest.approx(float(shortest_t), rel=1e-12)


def test_the_compiled_edge_loop_keeps_no_edge_when_none_is_within_r_max():
    """Candidates within cutoff + skin but none within r_max now (a short r_max):
    empty edges of the right shapes and an infinite shortest edge, as with torch."""
    from mtsmlip.forces.model import SkinNeighborList

    atoms = small_water_box(seed=4)
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    found = {}
    for kernels in ("compiled", "torch"):
        nl = SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, kernels=kernels)
        nl.build(x)
        assert nl.edge_index.shape[1] > 0
        found[kernels] = nl.edges(x, 0.5)  # no two atoms of the box are closer than 0.5 Å
    for index, vectors, shortest in found.values():
        assert tuple(index.shape) == (2, 0) and tuple(vectors.shape) == (0, 3)
        assert float(shortest) == float("inf")
    assert found["compiled"][0].dtype == found["torch"][0].dtype == torch.int64


def test_the_compiled_loops_keep_a_blown_up_state_from_looking_fine():
    """NaN positions: the largest move since the build is NaN (not 0), so a
    lazy list records it for the engine, and no NaN edge reaches the model."""
    from mtsmlip.forces import cpu_kernels
    from mtsmlip.forces.model import SkinNeighborList

    atoms = small_water_box(seed=4)
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    nl = SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, kernels="compiled")
    nl.build(x)
    bad = x.clone()
    bad[7, 1] = float("nan")
    assert torch.isnan(torch.tensor(cpu_kernels.largest_move2_A2(bad.numpy(), x.numpy())))
    nl.begin_lazy()
    index, vectors, _ = nl.edges(bad, 2.5)
    assert torch.isnan(torch.tensor(float(nl.moved2_A2))) and not bool(nl.stale)
    assert torch.isfinite(vectors).all() and not (index == 7).any()
    nl.end_lazy()  # checked at every call: a NaN move rebuilds nothing and raises nothing
    builds = nl.n_builds
    nl.edges(bad, 2.5)
    assert nl.n_builds == builds
    # without filtering, every candidate goes in, NaN ones too, and the shortest edge is NaN, as with torch
    found = {}
    for kernels in ("compiled", "torch"):
        unfiltered = SkinNeighborList(3.0, 1.0, atoms.cell.array, atoms.pbc, filter_edges=False, kernels=kernels)
        unfiltered.build(x)
        found[kernels] = unfiltered.edges(bad, 2.5)
    (index_c, vectors_c, shortest_c), (index_t, vectors_t, shortest_t) = found.values()
    assert torch.equal(index_c, index_t) and index_c.shape[1] == unfiltered.edge_index.shape[1]
    torch.testing.assert_close(vectors_c, vectors_t, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(vectors_c).any()
    assert torch.isnan(torch.tensor(float(shortest_c))) and torch.isnan(torch.tensor(float(shortest_t)))


def test_the_compiled_force_scatter_sums_float32_edge_forces_as_index_add():
    """A float32 model's edge forces, widened and summed in edge order: the same
    forces, bit for bit, as torch's two index_add_ calls."""
    from mtsmlip.forces import cpu_kernels

    generator = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 40, (2, 3000), generator=generator)
    edge_forces = torch.randn(3000, 3, generator=generator, dtype=torch.float32)
    expected = torch.zeros(40, 3, dtype=torch.float64)
    wide = edge_forces.to(torch.float64)
    with torch.no_grad():
        expected.index_add_(0, edge_index[0], wide)
        expected.index_add_(0, edge_index[1], wide.neg())
    found = torch.from_numpy(cpu_kernels.atomic_forces(40, edge_index.numpy(), edge_forces.numpy()))
    assert torch.equal(found, expected)
    assert not torch.equal(found, torch.from_numpy(cpu_kernels.atomic_forces(40, edge_index.flip(0).numpy(),
                                                                           edge_forces.numpy())))


def test_compiled_and_torch_edge_work_give_the_same_run_bit_for_bit(gentle, pair):
    """Forces, virial and a whole Langevin run with list rebuilds and redone
    batches (a 0.05 Å skin)
    are bit for bit the same whether the edge work runs in the CPU's compiled
    loops or in torch operations."""
    atoms = small_water_box(seed=2)
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    for name in ("fast", "slow", "baseline"):
        calls = {}
        for kernels in ("compiled", "torch"):
            provider = ModelForces(pair.models[name], atoms, skin_A=1.0)
            provider.neighbors.kernels = kernels
            calls[kernels] = (*provider(x), provider.virial_eV())
        (e1, f1, v1), (e2, f2, v2) = calls.values()
        assert torch.equal(e1, e2) and torch.equal(f1, f2) and (v1 == v2).all(), name
    settings = RunSettings(0.5, 2, "langevin", 300.0)
    states = {}
    for kernels in ("auto", "torch"):
        engine = engine_on(gentle, settings, skin_A=0.05, kernels=kernels, batch_inner_steps=40)
        seen = states.setdefault(kernels, [])
        engine.attach(lambda e, seen=seen: seen.append(e.state))
        engine.run(30, progress=False)
        assert sum(nl.n_builds for nl in engine.neighbor_lists) > 4  # the lists were rebuilt along the way
        assert engine.n_redone > 0  # and batches that outgrew them were done again
    for a, b in zip(states["auto"], states["torch"], strict=True):
        for field in ("positions", "momenta", "forces_fast", "forces_slow"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_a_batch_that_outgrew_its_lists_makes_the_next_ones_shorter(gentle, monkeypatch):
    """After a redone batch the next batch is half as long, so a hot start stops
    paying each batch twice; after CLEAN_BATCHES_TO_GROW clean batches it grows
    back to the full length. (The trajectory is the same whatever the batch
    length: test_the_same_trajectory_whether_read_every_step_or_in_batches.)"""
    settings = RunSettings(0.5, 2, "langevin", 300.0)
    engine = engine_on(gentle, settings, skin_A=0.05, batch_inner_steps=40)
    lengths, advance = [], Engine.advance

    def recorded(self, k):
        redone = self.n_redone
        done = advance(self, k)
        lengths.append((k, self.n_redone > redone))
        return done

    monkeypatch.setattr(Engine, "advance", recorded)
    engine.run(60, progress=False)
    assert any(redone for _, redone in lengths)
    for (k, redone), (k_next, _) in zip(lengths, lengths[1:]):
        if redone:
            assert k_next <= max(1, k // 2), lengths
    # growing back: full length (20 outer steps at n = 2) after enough clean batches
    engine.shortened_batch, engine.clean_batches = 5, 0
    for _ in range(engine_mod.CLEAN_BATCHES_TO_GROW):
        engine.adapt_batch_length(5, redone=False)
    assert engine.outer_steps_per_batch() == 10
    for _ in range(engine_mod.CLEAN_BATCHES_TO_GROW):
        engine.adapt_batch_length(10, redone=False)
    assert engine.shortened_batch is None and engine.outer_steps_per_batch() == 20

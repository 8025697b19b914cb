"""Peer test: i-PI's multiple-time-step integrator (nmts, mts_weights, fixcom
off) driving the same two ASE calculators over unix sockets (ase SocketClient)
reaches the same positions as MultiTimeStep."""

import os
import subprocess
import sys
import threading
import time
import uuid

import ase.io
import numpy as np
from ase.calculators.socketio import SocketClient

from mtsmlip.md import MultiTimeStep
from mtsmlip.md.analytic import SplitLennardJones
from tests.systems import argon

INNER_FS, N_INNER, OUTER_STEPS = 5.0, 4, 20

IPI_INPUT = """<simulation verbosity='low' safe_stride='1000'>
  <output prefix='sim'>
    <trajectory filename='pos' stride='{steps}' format='ase'> positions </trajectory>
  </output>
  <total_steps> {steps} </total_steps>
  <prng> <seed> 1 </seed> </prng>
  <ffsocket name='fast' mode='unix' pbc='false'> <address> {fast} </address> <latency> 1e-4 </latency> </ffsocket>
  <ffsocket name='slow' mode='unix' pbc='false'> <address> {slow} </address> <latency> 1e-4 </latency> </ffsocket>
  <system>
    <initialize nbeads='1'> <file mode='ase'> init.extxyz </file> </initialize>
    <forces>
      <force forcefield='slow'> <mts_weights> [1, 0] </mts_weights> </force>
      <force forcefield='fast'> <mts_weights> [0, 1] </mts_weights> </force>
    </forces>
    <motion mode='dynamics'>
      <fixcom> False </fixcom>
      <dynamics mode='nve'>
        <timestep units='femtosecond'> {outer_fs} </timestep>
        <nmts> [1, {n_inner}] </nmts>
      </dynamics>
    </motion>
    <ensemble> <temperature units='kelvin'> 80 </temperature> </ensemble>
  </system>
</simulation>
"""


def serve(atoms, calc, address, errors, deadline):
    """Connect an ASE SocketClient to i-PI's unix socket (retrying until i-PI is up) and serve."""
    while True:
        try:
            client = SocketClient(unixsocket=address, timeout=60)
            break
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if time.monotonic() > deadline:
                errors.append(exc)
                return
            time.sleep(0.1)
    atoms = atoms.copy()
    atoms.calc = calc
    try:
        client.run(atoms)
    except Exception as exc:  # reported by the test thread
        errors.append(exc)


def run_ipi(atoms, workdir):
    """i-PI MTS for OUTER_STEPS outer steps from `atoms` at rest; final positions (Å)."""
    tag = uuid.uuid4().hex[:8]
    addresses = {"fast": f"mtsfast{tag}", "slow": f"mtsslow{tag}"}
    ase.io.write(workdir / "init.extxyz", atoms)
    (workdir / "input.xml").write_text(IPI_INPUT.format(
        steps=OUTER_STEPS, outer_fs=INNER_FS * N_INNER, n_inner=N_INNER, **addresses))
    ipi = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "i-pi"), "input.xml"], cwd=workdir, stdout=open(workdir / "ipi.out", "w"), stderr=subprocess.STDOUT)
    errors, deadline = [], time.monotonic() + 60
    clients = [threading.Thread(target=serve, daemon=True,
                                args=(atoms, SplitLennardJones(name), addresses[name], errors, deadline))
               for name in ("fast", "slow")]
    for c in clients:
        c.start()
    try:
        ipi.wait(timeout=120)
    finally:
        ipi.kill()
    for c in clients:
        c.join(timeout=10)
    assert not errors, errors
    assert ipi.returncode == 0, (workdir / "ipi.out").read_text()[-2000:]
    return ase.io.read(workdir / "sim.pos_0.extxyz", index=-1).positions


def run_ours(atoms, timestep_fs, n_inner, steps):
    ours = atoms.copy()
    MultiTimeStep(ours, SplitLennardJones("fast"), SplitLennardJones("slow"), timestep_fs, n_inner).run(steps)
    return ours.positions


def test_same_positions_as_ipi_mts(tmp_path):
    atoms = argon(temperature_K=0.0, rattle_A=0.15)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    ipi_positions = run_ipi(atoms, tmp_path)
    ours = run_ours(atoms, INNER_FS, N_INNER, OUTER_STEPS)
    assert np.abs(ours - atoms.positions).max() > 0.05  # the atoms really moved
    np.testing.assert_allclose(ours, ipi_positions, atol=1e-6, rtol=0)  # brief asks 1e-4; we see ~2e-8
    # ... and the agreement is specific: velocity Verlet at the inner step lands elsewhere
    verlet = run_ours(atoms, INNER_FS, 1, OUTER_STEPS * N_INNER)
    assert np.abs(verlet - ipi_positions).max() > 1e-5

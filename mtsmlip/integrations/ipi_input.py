"""`mtsmlip ipi-input`: an i-PI run of a trained pair, ready to start.

The learned split maps onto i-PI's multiple-time-step integrator directly: two
socket force fields, the slow one with ``mts_weights [1, 0]`` (outer level) and
the fast one with ``[0, 1]`` (inner level), and ``nmts [1, n]``. With path
integrals the slow force may be evaluated on fewer beads than the fast one
(ring-polymer contraction, ``<force nbeads=P'>``): it is smooth, so a contracted
ring polymer represents it well, and that is where the cost is.

The output directory holds ``input.xml`` (i-PI's input), ``init.extxyz`` (the
starting structure) and ``run.sh``, which starts i-PI and one ``mtsmlip serve``
client per force field and exits when i-PI ends. docs/ipi.md shows how to run the
clients on other machines instead.
"""

from __future__ import annotations

import shlex
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .ipi_client import Address

# i-PI thermostats for our names: classical (one bead) and path-integral (several)
THERMOSTATS = {
    "langevin": ("langevin", "pile_l"),  # white-noise Langevin; PILE-L on the normal modes
    "bussi": ("svr", "pile_g"),  # stochastic velocity rescaling; PILE-G (SVR on the centroid)
}
PROPERTY_STRIDE_DEFAULT = 10
DEFAULT_N_INNER = 4  # without --baseline and --n-inner


@dataclass(frozen=True)
class IPIRun:
    """Everything that defines one i-PI run of a pair (or of the baseline alone).

    ``n_inner`` inner steps of ``timestep_fs`` per outer step; ``beads`` ring-polymer
    beads, the slow force on ``contract_beads`` of them; ``thermostat`` None (NVE),
    "langevin" or "bussi"; ``addresses`` {force field name: Address}.
    """

    steps: int
    timestep_fs: float
    n_inner: int
    temperature_K: float | None
    thermostat: str | None = None
    tau_fs: float = 100.0
    beads: int = 1
    contract_beads: int | None = None
    baseline: bool = False
    seed: int = 0
    stride: int = PROPERTY_STRIDE_DEFAULT
    species: tuple = ()
    addresses: dict = field(default_factory=dict)

    def check(self) -> None:
        """DataError naming the option of any inconsistent setting."""
        if self.contract_beads is not None and not 1 <= self.contract_beads <= self.beads:
            raise DataError(f"--contract-beads {self.contract_beads}: must be between 1 and --beads ({self.beads})")
        if self.contract_beads is not None and self.beads % self.contract_beads:
            raise DataError(f"--contract-beads {self.contract_beads}: must divide --beads ({self.beads}) so the "
                            "contracted ring polymer's normal modes are a subset of the full one's")
        if self.baseline and self.n_inner != 1:
            raise DataError("--baseline runs velocity Verlet with the baseline model: leave --n-inner at 1")
        if self.baseline and self.contract_beads not in (None, self.beads):
            raise DataError("--baseline has one force, evaluated on every bead: --contract-beads does not apply")
        if self.thermostat is not None and self.temperature_K is None:
            raise DataError(f"--thermostat {self.thermostat}: needs --temperature-K")
        if self.beads > 1 and self.temperature_K is None:
            raise DataError("--beads > 1: path integrals need --temperature-K (it sets the ring-polymer springs)")
        names = set(self.addresses.values())
        if len(names) != len(self.addresses):
            raise DataError("the fast and slow force fields need different addresses")

    @property
    def outer_fs(self) -> float:
        return self.timestep_fs * self.n_inner

    @property
    def force_fields(self) -> dict:
        """{force field name: (part served, mts_weights, beads it is evaluated on)}."""
        if self.baseline:
            return {"baseline": ("baseline", None, self.beads)}
        slow_beads = self.contract_beads or self.beads
        return {"slow": ("slow", "[1, 0]", slow_beads), "fast": ("fast", "[0, 1]", self.beads)}


def default_addresses(baseline: bool) -> dict:
    """A fresh unix socket name per force field, so runs side by side never meet."""
    tag = uuid.uuid4().hex[:8]
    names = ("baseline",) if baseline else ("slow", "fast")
    return {name: Address(unix=f"mtsmlip-{tag}-{name}") for name in names}


def _sub(parent, tag, text=None, **attrib):
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        element.text = f" {text} "
    return element


def input_xml(run: IPIRun) -> str:
    """i-PI's input for `run` (XML text)."""
    sim = ET.Element("simulation", verbosity="low", safe_stride=str(max(run.stride, 100)))
    _outputs(_sub(sim, "output", prefix="simulation"), run)
    _sub(sim, "total_steps", run.steps)
    _sub(_sub(sim, "prng"), "seed", run.seed)
    for name, address in run.addresses.items():
        ff = _sub(sim, "ffsocket", name=name, mode=address.ipi_mode, pbc="false")
        _sub(ff, "address", address.ipi_address)
        if address.port is not None:
            _sub(ff, "port", address.port)
        _sub(ff, "latency", "1e-4")
    system = _sub(sim, "system")
    init = _sub(system, "initialize", nbeads=run.beads)
    _sub(init, "file", "init.extxyz", mode="ase")
    if run.temperature_K is not None:
        _sub(init, "velocities", run.temperature_K, mode="thermal", units="kelvin")
    forces = _sub(system, "forces")
    for name, (_part, weights, beads) in run.force_fields.items():
        force = _sub(forces, "force", forcefield=name, **({"nbeads": beads} if beads != run.beads else {}))
        if weights is not None:
            _sub(force, "mts_weights", weights)
    _motion(_sub(system, "motion", mode="dynamics"), run)
    if run.temperature_K is not None:
        _sub(_sub(system, "ensemble"), "temperature", run.temperature_K, units="kelvin")
    ET.indent(sim)
    return ET.tostring(sim, encoding="unicode") + "\n"


def _outputs(output, run: IPIRun) -> None:
    per_species = [f"kinetic_cv{{electronvolt}}({s})" for s in run.species] if run.beads > 1 else []
    columns = ["step", "time{picosecond}", "conserved{electronvolt}", "temperature{kelvin}",
               "potential{electronvolt}", "kinetic_md{electronvolt}", *per_species]
    _sub(output, "properties", f"[ {', '.join(columns)} ]", stride=run.stride, filename="out")
    _sub(output, "trajectory", "positions", stride=run.stride, filename="pos", format="ase")
    _sub(output, "checkpoint", stride=max(run.stride, 100), filename="checkpoint")


def _motion(motion, run: IPIRun) -> None:
    # the centre of mass is left alone in NVE (momentum is conserved anyway), as in
    # mtsmlip's engine; thermostats would otherwise drive it
    _sub(motion, "fixcom", "False" if run.thermostat is None else "True")
    dynamics = _sub(motion, "dynamics", mode="nve" if run.thermostat is None else "nvt")
    _sub(dynamics, "timestep", run.outer_fs, units="femtosecond")
    if not run.baseline:
        _sub(dynamics, "nmts", f"[1, {run.n_inner}]")
    if run.thermostat is not None:
        mode = THERMOSTATS[run.thermostat][1 if run.beads > 1 else 0]
        thermostat = _sub(dynamics, "thermostat", mode=mode)
        _sub(thermostat, "tau", run.tau_fs, units="femtosecond")
        if mode.startswith("pile"):
            _sub(thermostat, "pile_lambda", "0.5")


ISOLATED_BOX_MARGIN_A = 20.0


def give_isolated_structure_a_box(atoms) -> None:
    """i-PI needs a cell even for a molecule (it refuses a zero cell). An
    isolated structure keeps pbc False (mtsmlip's clients then ignore the cell,
    and i-PI's sockets use pbc="false"), and gets a box ``ISOLATED_BOX_MARGIN_A``
    wider than its extent if it has no cell; the atoms are not moved."""
    if atoms.pbc.any() or atoms.cell.rank == 3:
        return
    extent = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
    atoms.set_cell(np.diag(extent + ISOLATED_BOX_MARGIN_A))


def installed_command(name: str) -> str:
    """`name` as installed beside this Python (a virtual environment need not be
    on PATH when run.sh runs), else the bare name, looked up on PATH."""
    import sys

    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def launcher(run: IPIRun, model: str, teacher: str | None, clients: int, wait_s: float) -> str:
    """run.sh: i-PI in the background, `clients` servers per force field, i-PI's
    exit status as its own; the clients are stopped if anything fails."""
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        "# Written by `mtsmlip ipi-input`: starts i-PI and its force clients, exits when i-PI ends.",
        "# The clients can run elsewhere: see docs/ipi.md (inet addresses, one `mtsmlip serve` per client).",
        "set -uo pipefail",
        'cd "$(dirname "$0")"',
        f'IPI="${{IPI:-{q(installed_command("i-pi"))}}}"',
        f'MTSMLIP="${{MTSMLIP:-{q(installed_command("mtsmlip"))}}}"',
        "clients=()",
        'stop_all() { kill "${clients[@]}" "${ipi:-}" 2>/dev/null; }',
        "trap stop_all INT TERM",
        '"$IPI" input.xml > ipi.log 2>&1 &',
        "ipi=$!",
    ]
    teacher_option = f" --teacher {q(teacher)}" if teacher else ""
    for name, (part, _weights, _beads) in run.force_fields.items():
        for k in range(clients):
            lines += [f'"$MTSMLIP" serve --model {q(model)}{teacher_option} --part {part} '
                      f"--address {q(str(run.addresses[name]))} --structure init.extxyz --wait-s {wait_s:g} "
                      f"> serve-{name}-{k}.log 2>&1 &",
                      "clients+=($!)"]
    lines += [
        'wait "$ipi"; status=$?',
        'if [ "$status" -ne 0 ]; then',
        '  echo "run.sh: i-PI stopped with status $status; the end of ipi.log:" >&2; tail -n 15 ipi.log >&2',
        "  stop_all",
        "  exit \"$status\"",
        "fi",
        "# i-PI ended well: its clients leave on its EXIT",
        'for c in "${clients[@]}"; do',
        '  if ! wait "$c"; then echo "run.sh: a force client failed (see serve-*.log)" >&2; status=1; fi',
        "done",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def addresses_from(args) -> dict:
    """{force field: Address}: fresh unix sockets unless --fast-address /
    --slow-address say otherwise (with --baseline, --fast-address is the baseline's)."""
    addresses = default_addresses(args.baseline)
    if args.baseline and args.slow_address is not None:
        raise DataError("--slow-address: a --baseline run has one force field; give its address as --fast-address")
    for name, option, text in (("slow", "--slow-address", args.slow_address),
                               ("baseline" if args.baseline else "fast", "--fast-address", args.fast_address)):
        if text is not None:
            addresses[name] = Address.parse(text, option)
    return addresses


def run(args) -> int:
    """`mtsmlip ipi-input`."""
    import ase.io

    from ..data import read_structure
    from ..files import atomic_write, check_output_dir
    from ..models import TrainedModels
    from .ipi_client import check_structure_fits

    models = TrainedModels.load(args.model, teacher=args.teacher)
    atoms = read_structure(args.structure)
    addresses = addresses_from(args)
    n_inner = args.n_inner if args.n_inner is not None else 1 if args.baseline else DEFAULT_N_INNER
    spec = IPIRun(steps=args.steps, timestep_fs=args.timestep_fs, n_inner=n_inner,
                  temperature_K=args.temperature_K, thermostat=args.thermostat, tau_fs=args.tau_fs,
                  beads=args.beads, contract_beads=args.contract_beads, baseline=args.baseline, seed=args.seed,
                  stride=args.stride, species=tuple(sorted(set(atoms.get_chemical_symbols()))),
                  addresses=addresses)
    spec.check()
    for name, (part, _w, _b) in spec.force_fields.items():
        check_structure_fits(models, part, atoms, args.structure)
        if addresses[name].in_use():
            option = "--slow-address" if name == "slow" else "--fast-address"
            raise DataError(f"{addresses[name]}: something already listens there (another i-PI run?); "
                            f"choose another {option}")
    out = check_output_dir(args.out)
    if (out / "input.xml").exists() and not args.overwrite:
        raise DataError(f"{out}: holds an i-PI input already (use --overwrite or another --out)")
    atoms.calc = None
    give_isolated_structure_a_box(atoms)
    atomic_write(out / "init.extxyz", lambda tmp: ase.io.write(tmp, atoms, format="extxyz"))
    atomic_write(out / "input.xml", lambda tmp: Path(tmp).write_text(input_xml(spec)))
    model = str(models.directory.resolve())
    atomic_write(out / "run.sh", lambda tmp: Path(tmp).write_text(
        launcher(spec, model, args.teacher, args.clients, args.wait_s)))
    (out / "run.sh").chmod(0o755)
    slow = f", slow on {spec.force_fields['slow'][2]} beads" if not spec.baseline and spec.beads > 1 else ""
    print(f"mtsmlip ipi-input: {spec.steps} steps of {spec.outer_fs:g} fs (n = {spec.n_inner}), "
          f"{spec.beads} bead(s){slow}; start it with: bash {out / 'run.sh'}")
    return 0

"""Every command-line option of every subcommand, with its unit, default and the
check of its value, in one light module: it imports neither torch nor ase, so
``mtsmlip --help`` and ``mtsmlip md --help`` answer at once.

A bad value is refused by argparse before anything runs or is written, with the
option named: ``argument --epochs: must be an integer >= 1 (got '0')``.
"""

from __future__ import annotations

import argparse
import math

from .shipped import DEFAULT_MODEL


# ---- value checks (argparse `type=` functions) --------------------------------------
def integer(minimum: int):
    """An integer >= `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum} (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum} (got {text!r})")
        return value
    return parse


def number(minimum: float = 0.0, inclusive: bool = False):
    """A finite float > `minimum` (>= with `inclusive`)."""
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {relation} {minimum:g} (got {text!r})")
        return value
    return parse


def integer_list(minimum: int):
    """Comma-separated integers >= `minimum`, e.g. '2,4,6' -> (2, 4, 6)."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            values = ()
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated integers >= {minimum}, like 2,4,6 (got {text!r})")
        return values
    return parse


def n_inner_value(text: str) -> int:
    """An inner-step count: an integer from 1 to :data:`mtsmlip.limits.MAX_N_INNER`."""
    from .limits import MAX_N_INNER

    value = integer(1)(text)
    if value > MAX_N_INNER:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_N_INNER} (got {text!r}); an outer "
                                         "step this long is far past the slow force's resonance limit")
    return value


def at_least_one_or_auto(text: str):
    """An inner-step count (:func:`n_inner_value`), or 'auto' (the probe of mtsmlip.probe chooses)."""
    return "auto" if text.strip() == "auto" else n_inner_value(text)


def n_inner_list(text: str) -> tuple:
    """Comma-separated integers >= 1 and at most one 'auto', e.g. '2,4,auto'."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if items.count("auto") > 1:
        raise argparse.ArgumentTypeError(f"'auto' may appear once (got {text!r})")
    numbers = integer_list(1)(",".join(x for x in items if x != "auto")) if len(items) > items.count("auto") else ()
    for n in numbers:
        n_inner_value(str(n))
    return numbers + (("auto",) if "auto" in items else ())


def name_values(text: str, example: str = "NAME=VALUE pairs like diffusion=0.1,drift=1",
                valid=lambda name: bool(name)) -> tuple:
    """NAME=VALUE pairs, comma-separated, e.g. 'diffusion=0.1,drift=1' -> (('diffusion', 0.1), ('drift', 1.0)),
    values > 0, each name once and accepted by `valid` (tolerance names are checked where they are used)."""
    pairs = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, value = item.partition("=")
        name = name.strip()
        if not valid(name) or not value:
            raise argparse.ArgumentTypeError(f"must be {example} (got {text!r})")
        if name in pairs:
            raise argparse.ArgumentTypeError(f"{name} is named twice (got {text!r})")
        pairs[name] = number(0.0)(value)
    if not pairs:
        raise argparse.ArgumentTypeError(f"must be {example} (got {text!r})")
    return tuple(sorted(pairs.items()))


def species_rates(text: str) -> tuple:
    """SYMBOL=RATE pairs, comma-separated, e.g. 'H=0.1,O=0.01' -> (('H', 0.1), ('O', 0.01))."""
    from ase.data import atomic_numbers

    return name_values(text, "SYMBOL=RATE pairs like H=0.1,O=0.01", lambda symbol: symbol in atomic_numbers)


positive = number(0.0)
non_negative = number(0.0, inclusive=True)
seed_value = integer(0)
at_least_one = integer(1)


# ---- options shared by several commands ----------------------------------------------
def add_model(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model directory from `mtsmlip train`, or the name of shipped models "
                        f"({DEFAULT_MODEL!r}: the shipped water models; 'water-allegro': the same with an Allegro "
                        "slow model, for LAMMPS on several MPI ranks)")


def add_model_and_teacher(p) -> None:
    add_model(p)
    add_teacher(p)


def add_teacher(p) -> None:
    p.add_argument("--teacher", default=None, metavar="SPEC",
                   help="for a pair distilled from an external teacher (nequip model file or module:factory): "
                        "that teacher's spec again; mtsmlip never builds it from what a file says")


def add_seed(p, what: str) -> None:
    p.add_argument("--seed", type=seed_value, default=0, help=f"seed (integer >= 0) for {what}")


def add_thermostat_rates(p) -> None:
    p.add_argument("--friction-per-fs", type=positive, default=None,
                   help="Langevin friction (1/fs); default 0.01")
    p.add_argument("--species-friction-per-fs", type=species_rates, default=(), metavar="SYMBOL=RATE,...",
                   help="Langevin friction of the named species (1/fs), e.g. H=0.1: damps the O–H stretch an "
                        "outer step near its period would excite; the others keep --friction-per-fs")
    p.add_argument("--tau-fs", type=positive, default=None,
                   help="Bussi relaxation time (fs); default 100")


def check_thermostat_rates(args) -> None:
    """Each thermostat takes its own rate: --friction-per-fs (Langevin), --tau-fs (Bussi)."""
    if args.thermostat != "auto":  # chosen from the structure later (compare): checked then
        check_rates(args.thermostat, args.friction_per_fs, args.tau_fs, args.species_friction_per_fs)


def check_rates(thermostat, friction_per_fs, tau_fs, species_friction_per_fs=()) -> None:
    """DataError if a rate is given that `thermostat` (None: NVE) does not take."""
    from .errors import DataError

    if thermostat != "langevin" and species_friction_per_fs:
        raise DataError("--species-friction-per-fs is a Langevin friction; "
                        f"{thermostat or 'NVE'} does not take it (use --thermostat langevin)")
    if thermostat != "langevin" and friction_per_fs is not None:
        raise DataError("--friction-per-fs is the Langevin friction; "
                        f"{thermostat or 'NVE'} does not take it (Bussi: --tau-fs, its relaxation time)")
    if thermostat != "bussi" and tau_fs is not None:
        raise DataError(f"--tau-fs is the Bussi relaxation time; {thermostat or 'NVE'} does not take it "
                        "(Langevin: --friction-per-fs)")


def add_hmr(p) -> None:
    p.add_argument("--hmr-amu", type=non_negative, default=0.0,
                   help="hydrogen mass repartitioning: mass (amu) moved onto each H from its bonded heavy atom, "
                        "for every run alike; keeps the configurational distribution, changes the dynamics")


def add_probe(p) -> None:
    p.add_argument("--probe-fs", type=positive, default=200.0,
                   help="--n-inner auto: simulated fs of each NVE segment of the probe (n = 1 and every candidate)")


def add_device(p) -> None:
    p.add_argument("--device", default="cpu", help="torch device of the models and the state, e.g. cpu, cuda")


def add_max_minutes(p) -> None:
    p.add_argument("--max-minutes", type=positive, default=None,
                   help="wall-clock cap of the whole training (minutes), shared equally by its stages; each "
                        "stage ends after the epoch that reaches its share")


def add_check_fs(p) -> None:
    p.add_argument("--check-fs", type=non_negative, default=None,
                   help="overrides `stability_md_fs`: fs of MD per run of the stability check after training "
                        "(at most; config default 500; 0 skips the check)")


def add_no_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---- one function per subcommand ------------------------------------------------------
def train(p) -> None:
    p.add_argument("--data", required=True,
                   help="reference frames with energies (eV) and forces (eV/Å), any ase.io.read format")
    p.add_argument("--config", default=None,
                   help="YAML merged into the default config (mtsmlip/configs/train_default.yaml)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same --data file and options)")
    p.add_argument("--seed", type=seed_value, default=None,
                   help="overrides `seed` (split, initialisation, shuffling; config default 0)")
    p.add_argument("--train-frames", type=at_least_one, default=None,
                   help="overrides `train_frames` (config default auto: all but the validation and test shares)")
    p.add_argument("--epochs", type=at_least_one, default=None,
                   help="overrides `epochs` of each stage (config default auto: about `steps` optimiser steps and "
                        "at least `min_epochs` passes over the frames, ended early when the validation loss "
                        "reaches a plateau)")
    add_max_minutes(p)
    add_check_fs(p)
    p.add_argument("--no-baseline", action="store_true", help="skip the conventional baseline")
    p.add_argument("--slow-architecture", choices=["nequip", "allegro"], default=None,
                   help="the slow model: nequip (default) or allegro, which is strictly local, so that in LAMMPS "
                        "the whole pair runs across MPI ranks (overrides `slow_architecture`)")
    p.add_argument("--reuse-stages-from", action="append", default=[], metavar="RUN",
                   help="an earlier run directory (repeatable): a stage it finished with the same models, "
                        "data, split and settings is copied instead of trained again")


def distill(p) -> None:
    p.add_argument("--teacher", required=True, metavar="SPEC",
                   help="the potential to make faster: a model directory from `mtsmlip train` (its baseline) or "
                        "a shipped name, a nequip model (.nequip.zip, .ckpt), or an ASE calculator as "
                        "module:factory[:kwargs-json], e.g. ase.calculators.emt:EMT")
    p.add_argument("--data", default=None, help="frames to relabel with the teacher (any ase.io format); "
                   "the config's split picks the train/validation frames and holds out the test frames")
    p.add_argument("--structure", default=None,
                   help="starting structure for teacher MD (Langevin at --temperature-K and 1.5 times it)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--config", default=None,
                   help="training YAML merged into the defaults (its fast_model, epochs, split, ...)")
    p.add_argument("--temperature-K", type=positive, default=300.0, help="temperature of the teacher MD (K)")
    p.add_argument("--frames", type=at_least_one, default=200, help="teacher-MD frames to generate in all")
    p.add_argument("--md-timestep-fs", type=positive, default=0.5, help="time step of the teacher MD (fs)")
    p.add_argument("--md-interval", type=at_least_one, default=10, help="teacher-MD steps between frames")
    p.add_argument("--train-frames", type=at_least_one, default=None,
                   help="overrides `train_frames` (frames of --data to train on)")
    p.add_argument("--epochs", type=at_least_one, default=None, help="overrides `epochs`")
    add_max_minutes(p)
    add_check_fs(p)
    p.add_argument("--seed", type=seed_value, default=None, help="overrides `seed` (split, initialisation, MD)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_device(p)
    add_no_progress(p)


def evaluate(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--data", required=True, help="frames with reference energies and forces")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--frames", default=None,
                       help="python slice of the frames, e.g. '-200:' or '0:100:5' (default: all)")
    which.add_argument("--split", choices=("train", "val", "test"), default=None,
                       help="the frames of this part of the training split (the same data file)")
    p.add_argument("--json", action="store_true", help="print the errors as JSON")
    p.add_argument("--out", default=None, help="folder for parity.png (default: the model directory; "
                                               "./eval-NAME for shipped models)")


def md(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--structure", required=True, help="starting structure (any ase.io format; last frame)")
    p.add_argument("--timestep-fs", type=positive, default=0.5, help="inner time step δt (fs)")
    p.add_argument("--n-inner", type=at_least_one_or_auto, default=4,
                   help="inner steps per outer step (Δt = n·δt), or auto: a short probe of the system picks the "
                        "largest safe n (slow-force spectrum, then short NVE segments), prints why and keeps it "
                        "in OUT/md.log and OUT/n_inner_auto.json")
    add_probe(p)
    p.add_argument("--steps", type=at_least_one, required=True,
                   help="outer steps of the whole run; with --resume the run continues up to this total")
    p.add_argument("--temperature-K", type=non_negative, default=None,
                   help="thermostat target (K); also the initial Maxwell–Boltzmann velocities if the "
                        "structure has none. Left out: the run starts at 0 K (atoms at rest) unless the "
                        "structure holds momenta")
    p.add_argument("--thermostat", choices=["langevin", "bussi"], default=None,
                   help="thermostat (left out: NVE)")
    add_thermostat_rates(p)
    add_hmr(p)
    p.add_argument("--baseline", action="store_true",
                   help="velocity Verlet at --timestep-fs with the baseline model (n_inner is set to 1)")
    p.add_argument("--out", required=True, help="output directory (log, trajectory, restart)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/restart.npz (same model and settings)")
    add_seed(p, "initial velocities and thermostat noise")
    p.add_argument("--traj-every", type=at_least_one, default=10,
                   help="write a frame, a log row and the restart every k outer steps")
    p.add_argument("--skin-A", type=non_negative, default=1.0, help="neighbour-list skin (Å)")
    p.add_argument("--replicas", type=at_least_one, default=1,
                   help="independent copies of an isolated molecule in one run (beyond every cutoff: they "
                        "do not interact); each model call then serves all of them. The trajectory holds "
                        "all copies (mtsmlip.md.replicas.split_replicas cuts a frame apart); use Langevin")
    add_device(p)
    add_no_progress(p)


def compare(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--structure", required=True, help="starting structure (any ase.io format)")
    p.add_argument("--ps", type=positive, required=True, help="simulated ps per run (NVT production)")
    p.add_argument("--timestep-fs", type=positive, default=0.5, help="inner and baseline time step δt (fs)")
    p.add_argument("--n-inner", type=n_inner_list, default="2,3,4,6",
                   help="comma-separated inner-step counts n to test; include 1 (the pair with velocity "
                        "Verlet) to tell model differences from integrator differences; 'auto' adds the n a short "
                        "probe picks from the equilibrated start (OUT/n_inner_auto.json)")
    add_probe(p)
    p.add_argument("--temperature-K", type=positive, default=300.0, help="temperature (K)")
    p.add_argument("--thermostat", choices=["auto", "bussi", "langevin"], default="auto",
                   help="thermostat of every production run; auto: bussi (disturbs dynamics least) for a periodic "
                        "system, langevin for an isolated molecule, whose few weakly coupled modes a global "
                        "rescaling cannot bring to one temperature")
    p.add_argument("--system", choices=["auto", "liquid", "crystal", "molecule"], default="auto",
                   help="kind of system, which decides the checks (auto: molecule without a periodic cell; "
                        "else liquid if some species diffuses in the baseline run, crystal if none does)")
    add_thermostat_rates(p)
    add_hmr(p)
    p.add_argument("--equilibrate-ps", type=non_negative, default=0.2,
                   help="baseline Langevin equilibration first (ps)")
    p.add_argument("--equilibrate-friction-per-fs", type=positive, default=0.05,
                   help="Langevin friction of the equilibration (1/fs; strong, to remove relaxation heat)")
    p.add_argument("--nve-ps", type=non_negative, default=0.2, help="NVE segment per run for the drift (ps)")
    p.add_argument("--spectrum-ps", type=non_negative, default=0.1,
                   help="n=1 segment sampling both forces every δt (ps)")
    p.add_argument("--block-fs", type=positive, default=None,
                   help="interleaving block length (simulated fs; default: about 20 fs)")
    add_seed(p, "velocities and thermostat noise")
    p.add_argument("--repeats", type=at_least_one, default=4,
                   help="independent repeats: the whole comparison from this many decorrelated starts (OUT/repeat-k; "
                        "n = 1 is added), then each observable as a mean difference with a 95 %% confidence interval "
                        "and a verdict against a physical tolerance: same, different or cannot tell. 4: the CI's "
                        "width in units of one run's spread falls 9.0, 2.5, 1.6, 1.2 for 2, 3, 4, 5 repeats. "
                        "1: one run per n, judged against the baseline's own noise (the older, single-run verdict)")
    p.add_argument("--tolerance", type=name_values, default=(), metavar="NAME=VALUE,...",
                   help="with --repeats >= 2: override physical tolerances, e.g. diffusion=0.1 (a fraction for "
                        "relative ones, the unit for absolute ones; report.md lists them)")
    add_device(p)
    p.add_argument("--out", required=True, help="output directory (report.md, compare.json, plots)")
    p.add_argument("--json", action="store_true", help="print compare.json to stdout")
    add_no_progress(p)


def demo(p) -> None:
    add_model(p)
    p.add_argument("--molecules", type=at_least_one, default=64, help="water molecules in the box")
    p.add_argument("--ps", type=positive, default=0.5, help="simulated ps per run")
    p.add_argument("--n-inner", type=integer_list(1), default="2,4,6,8", help="inner-step counts to test")
    p.add_argument("--equilibrate-ps", type=non_negative, default=0.2, help="equilibration (ps)")
    p.add_argument("--temperature-K", type=positive, default=300.0, help="temperature (K)")
    add_seed(p, "the box, velocities and thermostat noise")
    p.add_argument("--out", default="mtsmlip-demo", help="output directory")
    add_no_progress(p)


def serve(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--part", required=True, choices=["fast", "slow", "total", "baseline"],
                   help="which force to serve: fast, slow (for i-PI's outer level), total (fast + slow) or baseline")
    p.add_argument("--address", required=True,
                   help="where i-PI listens: unix:NAME (the socket /tmp/ipi_NAME) or HOST:PORT (inet, for a client "
                        "on another machine)")
    p.add_argument("--structure", required=True,
                   help="the system i-PI runs (species in i-PI's atom order; any ase.io format, last frame)")
    p.add_argument("--wait-s", type=positive, default=120.0,
                   help="how long to wait for i-PI to listen, at the start and after a lost connection (s)")
    p.add_argument("--read-timeout-s", type=positive, default=600.0,
                   help="how long i-PI may send nothing while serve waits for its next message or the rest of one "
                        "(s); i-PI asks only when it needs this force, so raise it when another force field of the "
                        "run takes longer than this per step")
    p.add_argument("--skin-A", type=non_negative, default=1.0, help="neighbour-list skin (Å)")
    add_device(p)


def ipi_input(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--structure", required=True, help="starting structure (any ase.io format; last frame)")
    p.add_argument("--out", required=True, help="output directory: input.xml, init.extxyz, run.sh")
    p.add_argument("--n-inner", type=at_least_one, default=None,
                   help="inner (fast) steps per outer (slow) step (default: 4; with --baseline: 1)")
    p.add_argument("--timestep-fs", type=positive, default=0.5, help="inner time step δt (fs)")
    p.add_argument("--steps", type=at_least_one, default=1000, help="outer steps")
    p.add_argument("--temperature-K", type=positive, default=None,
                   help="initial velocities, thermostat target and path-integral temperature (K); "
                        "left out: the run starts at rest")
    p.add_argument("--thermostat", choices=["langevin", "bussi"], default=None,
                   help="left out: NVE. With --beads > 1: langevin is PILE-L, bussi is PILE-G")
    p.add_argument("--tau-fs", type=positive, default=100.0, help="thermostat time constant (fs)")
    p.add_argument("--beads", type=at_least_one, default=1, help="ring-polymer beads (1: classical nuclei)")
    p.add_argument("--contract-beads", type=at_least_one, default=None,
                   help="beads the slow force is evaluated on (ring-polymer contraction; default: all)")
    p.add_argument("--baseline", action="store_true",
                   help="the conventional run instead: the baseline model alone, velocity Verlet (n = 1)")
    p.add_argument("--fast-address", default=None, help="unix:NAME or HOST:PORT for the fast force, or for the "
                                                       "baseline with --baseline (default: a fresh unix socket)")
    p.add_argument("--slow-address", default=None, help="unix:NAME or HOST:PORT for the slow force")
    p.add_argument("--clients", type=at_least_one, default=1,
                   help="`mtsmlip serve` clients per force field that run.sh starts (i-PI spreads beads over them)")
    p.add_argument("--wait-s", type=positive, default=120.0, help="how long each client waits for i-PI (s)")
    p.add_argument("--stride", type=at_least_one, default=10, help="outer steps between output rows and frames")
    add_seed(p, "i-PI's initial velocities and thermostat noise")
    p.add_argument("--overwrite", action="store_true", help="replace an i-PI input already in --out")


def lammps_build(p) -> None:
    p.add_argument("--source", required=True,
                   help="a checkout of mir-group/pair_nequip_allegro (git clone https://github.com/mir-group/pair_nequip_allegro)")
    p.add_argument("--out", default=None, help="where the plugin goes (default: a directory under ~/.cache/mtsmlip/"
                                               "lammps-plugin keyed by the source and the versions)")
    p.add_argument("--force", action="store_true", help="rebuild even if this source is already built there")


def lammps_input(p) -> None:
    p.add_argument("--model", required=True, help="a model directory from `mtsmlip train` or `mtsmlip distill` "
                                                  "(or a shipped name: water; water-allegro, whose whole pair "
                                                  "is Allegro and runs on any number of MPI ranks)")
    add_teacher(p)
    p.add_argument("--structure", required=True, help="starting structure (any ase.io format; last frame)")
    p.add_argument("--out", required=True, help="output directory: in.mts, in.baseline, structure.data, models/, run.sh")
    p.add_argument("--n-inner", type=at_least_one, default=4, help="inner (fast) steps per outer (slow) step")
    p.add_argument("--timestep-fs", type=positive, default=0.5, help="inner time step δt (fs)")
    p.add_argument("--steps", type=at_least_one, default=1000,
                   help="outer steps of in.mts (in.baseline runs the same simulated time in inner steps)")
    p.add_argument("--temperature-K", type=positive, default=None,
                   help="initial velocities and thermostat target (K); left out: the run starts at rest, "
                        "or from the structure's own momenta")
    p.add_argument("--thermostat", choices=["langevin", "bussi"], default=None,
                   help="left out: NVE. langevin: fix langevin (under respa: once per outer step); "
                        "bussi: fix temp/csvr (keeps dynamics)")
    p.add_argument("--friction-per-fs", type=positive, default=0.01, help="Langevin friction (1/fs)")
    p.add_argument("--tau-fs", type=positive, default=100.0, help="Bussi relaxation time (fs)")
    p.add_argument("--stride", type=at_least_one, default=10, help="outer steps between thermo rows and frames")
    p.add_argument("--plugin", default=None, help="the plugin from `mtsmlip lammps-build` (default: the newest build)")
    p.add_argument("--seed", type=at_least_one, default=1, help="initial velocities and thermostat noise")
    p.add_argument("--overwrite", action="store_true", help="replace a LAMMPS input already in --out")


def export(p) -> None:
    add_model_and_teacher(p)
    p.add_argument("--part", required=True, choices=["fast", "slow", "baseline"], help="which model to export")
    p.add_argument("--to", required=True, help="output file, ending in .nequip.zip")
    p.add_argument("--overwrite", action="store_true", help="replace the --to file if it exists")
    p.add_argument("--structure", default=None,
                   help="example structure packaged for nequip-compile (default: a small cluster of the model's "
                        "species)")

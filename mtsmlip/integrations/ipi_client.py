"""`mtsmlip serve`: one part of a trained pair as a force client for i-PI.

i-PI (https://ipi-code.org) owns the dynamics (r-RESPA with ``nmts``, path
integrals, replica exchange, PLUMED) and asks its clients for energies, forces
and virials over a socket. The wire format is ASE's implementation of the i-PI
protocol (:class:`ase.calculators.socketio.IPIProtocol`: framing, Bohr and
Hartree conversions); this module only adds what a model server needs around it:

- the force path is the engine's (:class:`mtsmlip.md.torch_forces.ModelForces`,
  skin neighbour lists), not an ASE calculator rebuilding its graph every call;
- it waits for i-PI to come up (and comes back if i-PI restarts from its
  RESTART file), naming the address and how long it waited when none does;
- a cell that changes (NPT) rebuilds the neighbour lists for the new cell.

i-PI's own Python driver (``i-pi-py_driver``) has the same loop, but it lives in
a script, not in an importable module, and takes its potential as a file of code
to run, which mtsmlip never does.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError

PARTS = ("fast", "slow", "total", "baseline")
UNIX_PREFIX = "/tmp/ipi_"  # where i-PI (and ASE) put the socket of <address>NAME</address>
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True)
class Address:
    """Where i-PI listens: a unix socket name (``unix:NAME``, the file
    /tmp/ipi_NAME) or an inet host and port (``HOST:PORT``)."""

    unix: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str, option: str = "--address") -> "Address":
        """An Address from ``unix:NAME`` or ``HOST:PORT``; DataError naming the option otherwise."""
        if text.startswith("unix:"):
            name = text[len("unix:"):]
            if not name or "/" in name or len(UNIX_PREFIX + name) > MAX_UNIX_PATH:
                raise DataError(f"{option} {text!r}: a unix socket name must be non-empty, hold no '/' and be "
                                f"at most {MAX_UNIX_PATH - len(UNIX_PREFIX)} characters (the socket is "
                                f"{UNIX_PREFIX}NAME)")
            return cls(unix=name)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise DataError(f"{option} {text!r}: expected unix:NAME or HOST:PORT with a port 1-65535, "
                            "e.g. unix:water or localhost:31415")
        return cls(host=host, port=int(port))

    def __str__(self) -> str:
        return f"unix:{self.unix}" if self.unix is not None else f"{self.host}:{self.port}"

    @property
    def ipi_mode(self) -> str:
        """i-PI's ``<ffsocket mode=...>`` for this address."""
        return "unix" if self.unix is not None else "inet"

    @property
    def ipi_address(self) -> str:
        """What goes in i-PI's ``<address>``: the unix name or the host."""
        return self.unix if self.unix is not None else self.host

    @property
    def target(self):
        """What a socket connects to: the unix socket's path, or (host, port)."""
        return UNIX_PREFIX + self.unix if self.unix is not None else (self.host, self.port)

    def new_socket(self) -> socket.socket:
        return socket.socket(socket.AF_UNIX if self.unix is not None else socket.AF_INET)

    def connect(self, wait_s: float) -> socket.socket:
        """A socket connected to i-PI, retrying while none listens, for up to `wait_s` s."""
        deadline = time.monotonic() + wait_s
        while True:
            sock = self.new_socket()
            try:
                sock.connect(self.target)
            except (FileNotFoundError, ConnectionRefusedError, socket.timeout):
                sock.close()
                if time.monotonic() > deadline:
                    raise DataError(f"--address {self}: no i-PI server answered within {wait_s:g} s "
                                    "(is i-PI running with this address? see --wait-s)") from None
                time.sleep(0.1)
                continue
            except socket.gaierror as exc:
                sock.close()
                raise DataError(f"--address {self}: unknown host {self.host!r} ({exc})") from None
            if self.unix is None:  # the i-PI messages are small: send them at once
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    def in_use(self) -> bool:
        """Whether something already listens here (i-PI could not bind it)."""
        sock = self.new_socket()
        sock.settimeout(1.0)
        try:
            sock.connect(self.target)
            return True
        except OSError:
            return False
        finally:
            sock.close()


class SumForces:
    """Force provider of fast + slow (the pair's total)."""

    def __init__(self, fast, slow):
        self.fast, self.slow = fast, slow
        if all(hasattr(p, "virial_eV") for p in (fast, slow)):  # a virial only where both parts have one
            self.virial_eV = lambda: fast.virial_eV() + slow.virial_eV()

    def __call__(self, positions):
        e_fast, f_fast = self.fast(positions)
        e_slow, f_slow = self.slow(positions)
        return e_fast + e_slow, f_fast + f_slow


def virial_of(provider) -> np.ndarray | None:
    """The virial (3, 3) eV of the provider's last call (i-PI's convention,
    −stress·volume), or None for a provider that cannot tell (an external teacher)."""
    virial = getattr(provider, "virial_eV", None)
    return None if virial is None else virial()


def part_forces(models, part: str, atoms, skin_A: float | None = None, device: str = "cpu"):
    """The force provider of one part of a model directory on `atoms`:
    fast, slow (for a distilled pair: teacher − fast), total (fast + slow) or
    baseline (for a distilled pair: the teacher). Bad species or cells raise
    DataError here, before any connection."""
    if part not in PARTS:
        raise DataError(f"--part {part!r}: not a part of a pair (choose from {', '.join(PARTS)})")
    if part == "baseline":
        return models.providers(atoms, baseline=True, skin_A=skin_A, device=device)[0]
    fast, slow = models.providers(atoms, skin_A=skin_A, device=device)
    return {"fast": fast, "slow": slow, "total": SumForces(fast, slow)}[part]


def check_structure_fits(models, part: str, atoms, path) -> None:
    """DataError naming the structure file if the part's models cannot run on
    it (species they never saw, a cell narrower than a cutoff)."""
    try:
        part_forces(models, part, atoms)
    except DataError as exc:
        raise DataError(f"{path}, last frame: {exc}") from None


class ForceServer:
    """Answers i-PI's requests with one force provider. `make_forces(atoms)`
    builds the provider for a structure (called again when the cell changes);
    `atoms` gives the species, in i-PI's atom order."""

    def __init__(self, make_forces, atoms, device="cpu"):
        self.make_forces, self.atoms = make_forces, atoms.copy()
        self.forces = make_forces(self.atoms)
        self.device = device
        self.calls = 0
        self.has_virial = hasattr(self.forces, "virial_eV")

    def evaluate(self, cell_A: np.ndarray, positions_A: np.ndarray):
        """(energy eV, forces (N, 3) eV/Å, virial (3, 3) eV) at these positions."""
        if len(positions_A) != len(self.atoms):
            raise DataError(f"i-PI sent {len(positions_A)} atoms; the structure given with --structure has "
                            f"{len(self.atoms)} (it must be the same system, in the same order)")
        if self.atoms.pbc.any() and not np.allclose(cell_A, self.atoms.cell.array, rtol=0, atol=1e-10):
            self.atoms.set_cell(cell_A, scale_atoms=False)
            self.forces = self.make_forces(self.atoms)
        x = torch.as_tensor(positions_A, dtype=torch.float64, device=self.device)
        energy, forces = self.forces(x)
        self.calls += 1
        virial = virial_of(self.forces)
        return (float(energy), forces.detach().cpu().numpy().astype(np.float64),
                np.zeros((3, 3)) if virial is None else np.asarray(virial, dtype=np.float64))

    def serve(self, sock) -> str:
        """One connection, until i-PI says EXIT ("exit") or the socket closes ("closed")."""
        from ase.calculators.socketio import IPIProtocol, SocketClosed

        protocol, state, result = IPIProtocol(sock), "NEEDINIT", None
        try:
            while True:
                try:
                    message = protocol.recvmsg()
                except (SocketClosed, ConnectionResetError):
                    return "closed"
                if message == "EXIT":
                    return "exit"
                if message == "STATUS":
                    protocol.sendmsg(state)
                elif message == "INIT":
                    protocol.recvinit()
                    state = "READY"
                elif message == "POSDATA":
                    cell, _inverse, positions = protocol.recvposdata()
                    result, state = self.evaluate(cell, positions), "HAVEDATA"
                elif message == "GETFORCE":
                    protocol.sendforce(*result)
                    state = "READY"
                else:
                    raise DataError(f"the server sent {message!r}, which is not an i-PI message "
                                    "(is the address an i-PI server?)")
        finally:
            sock.close()


def serve_until_done(server: ForceServer, address: Address, wait_s: float, log=sys.stderr) -> int:
    """Serve i-PI at `address` until it says EXIT. A connection that closes
    without EXIT (i-PI stopped or restarting) is retried for `wait_s` s; if no
    server comes back, the run is over. Returns the number of force calls."""
    connections = 0
    while True:
        try:
            sock = address.connect(wait_s)
        except DataError:
            if connections == 0:
                raise
            print(f"mtsmlip serve: i-PI at {address} closed the connection and none came back within "
                  f"{wait_s:g} s; stopping", file=log)
            return server.calls
        connections += 1
        print(f"mtsmlip serve: connected to i-PI at {address}", file=log)
        if server.serve(sock) == "exit":
            return server.calls


def run(args) -> int:
    """`mtsmlip serve`."""
    from ..data import read_structure
    from ..models import TrainedModels

    address = Address.parse(args.address)
    models = TrainedModels.load(args.model, teacher=args.teacher)
    atoms = read_structure(args.structure)
    check_structure_fits(models, args.part, atoms, args.structure)
    server = ForceServer(lambda a: part_forces(models, args.part, a, args.skin_A, args.device), atoms, args.device)
    if not server.has_virial:
        print(f"mtsmlip serve: the {args.part} part has no virial here (an external teacher); i-PI gets zero, so "
              "its pressure is wrong and NPT must not be used", file=sys.stderr)
    print(f"mtsmlip serve: {args.part} of {models.directory} for {atoms.get_chemical_formula()}; "
          f"waiting for i-PI at {address} (up to {args.wait_s:g} s)", file=sys.stderr)
    calls = serve_until_done(server, address, args.wait_s)
    print(f"mtsmlip serve: i-PI ended; {calls} force calls served", file=sys.stderr)
    return 0

"""`mtsmlip serve`: one part of a trained pair as a force client for i-PI.

i-PI (https://ipi-code.org) owns the dynamics (r-RESPA with ``nmts``, path
integrals, replica exchange, PLUMED) and asks its clients for energies, forces
and virials over a socket. The wire format is ASE's implementation of the i-PI
protocol (:class:`ase.calculators.socketio.IPIProtocol`: framing, Bohr and
Hartree conversions); this module only adds what a model server needs around it:

- the force path is the engine's (:mod:`mtsmlip.forces`, built by its factory:
  skin neighbour lists), not an ASE calculator rebuilding its graph every call;
- it waits for i-PI to come up (and comes back if i-PI restarts from its
  RESTART file), naming the address and how long it waited when none does;
- a cell that changes (NPT) rebuilds the neighbour lists for the new cell;
- what i-PI sends is untrusted: every read has an exact length and a timeout
  (``--read-timeout-s``), headers are checked against the i-PI messages and
  their order, the atom count before anything is allocated, and the cell and
  positions for NaN and inf; each failure is a DataError naming the address,
  the message and the field, never a traceback or a wait without end.

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
from ..forces import PARTS, part_provider, virial_of

UNIX_PREFIX = "/tmp/ipi_"  # where i-PI (and ASE) put the socket of <address>NAME</address>
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
DEFAULT_READ_TIMEOUT_S = 600.0  # serve's --read-timeout-s

HEADER_BYTES = 12  # an i-PI message header: the name, padded with spaces
IPI_MESSAGES = ("STATUS", "INIT", "POSDATA", "GETFORCE", "EXIT")  # what i-PI sends a client
EXPECTED_AFTER = {  # the messages i-PI may send while serve's status is ...
    "NEEDINIT": ("STATUS", "INIT", "POSDATA", "EXIT"),  # POSDATA: some servers skip INIT (ASE tolerates it)
    "READY": ("STATUS", "INIT", "POSDATA", "EXIT"),
    "HAVEDATA": ("STATUS", "GETFORCE", "EXIT"),
}
MAX_INIT_BYTES = 1 << 20  # i-PI's INIT carries the <parameters> string of its ffsocket: small
FLOAT64_BYTES = 8


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


def part_forces(models, part: str, atoms, skin_A: float | None = None, device: str = "cpu"):
    """The force provider of one part of a model directory on `atoms` (see
    :func:`mtsmlip.forces.part_provider`). Bad species or cells raise DataError
    here, before any connection."""
    if part not in PARTS:
        raise DataError(f"--part {part!r}: not a part of a pair (choose from {', '.join(PARTS)})")
    return part_provider(models, part, atoms, skin_A, device)


def check_structure_fits(models, part: str, atoms, path) -> None:
    """DataError naming the structure file if the part's models cannot run on
    it (species they never saw, a periodic frame without a cell)."""
    try:
        part_forces(models, part, atoms)
    except DataError as exc:
        raise DataError(f"{path}, last frame: {exc}") from None


def printable(raw: bytes) -> str:
    """Bytes as safe text: printable ASCII kept, everything else as escapes (\\x8f, \\n)."""
    return repr(bytes(raw))[1:]


def one_of(names) -> str:
    """'A, B or C'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


class ConnectionClosed(Exception):
    """i-PI closed the connection between two messages (it stopped or restarts)."""


class IPIConnection:
    """One connection to i-PI, whose bytes are untrusted: every read has an
    exact length and waits at most `read_timeout_s`; a header must be an i-PI
    message; sizes are checked before anything is allocated. Problems are
    DataErrors naming `address` and the field; a close between two messages is
    ConnectionClosed."""

    def __init__(self, sock, address, read_timeout_s: float):
        self.sock, self.address, self.read_timeout_s = sock, address, read_timeout_s
        sock.settimeout(read_timeout_s)

    # ---- failures, named
    def silent(self, waited_for: str) -> DataError:
        return DataError(f"i-PI at {self.address} sent nothing for {self.read_timeout_s:g} s while serve waited "
                         f"for {waited_for} (see --read-timeout-s)")

    def truncated(self, field: str, got_bytes: int, want_bytes: int) -> DataError:
        return DataError(f"i-PI at {self.address} closed the connection in the middle of {field}: "
                         f"{got_bytes} of its {want_bytes} bytes came (a truncated message)")

    # ---- reads
    def recv_some(self, n_bytes: int, waited_for: str) -> bytes:
        """Up to `n_bytes` (b'' when i-PI closed); DataError after read_timeout_s of silence."""
        try:
            return self.sock.recv(n_bytes)
        except socket.timeout:
            raise self.silent(waited_for) from None
        except ConnectionResetError:
            return b""

    def recv_exactly(self, n_bytes: int, field: str, start: bytes = b"") -> bytes:
        """Exactly `n_bytes` of `field` (the first ones `start`, already read);
        DataError if i-PI closes first or falls silent."""
        chunks, got_bytes = [start], len(start)
        while got_bytes < n_bytes:
            chunk = self.recv_some(min(n_bytes - got_bytes, 1 << 20), field)
            if not chunk:
                raise self.truncated(field, got_bytes, n_bytes)
            chunks.append(chunk)
            got_bytes += len(chunk)
        return b"".join(chunks)

    def recv_array(self, count: int, dtype, field: str) -> np.ndarray:
        return np.frombuffer(self.recv_exactly(count * np.dtype(dtype).itemsize, field), dtype=dtype)

    def recv_int32(self, field: str) -> int:
        return int(self.recv_array(1, "<i4", field)[0])

    def recv_header(self, waited_for: str) -> str:
        """The next message's name; ConnectionClosed if i-PI closed before it,
        DataError for bytes that are not an i-PI header."""
        first = self.recv_some(HEADER_BYTES, waited_for)
        if not first:
            raise ConnectionClosed
        raw = self.recv_exactly(HEADER_BYTES, "a message header", start=first)
        name = raw.rstrip(b" ")
        if name.decode("ascii", errors="replace") not in IPI_MESSAGES:
            raise DataError(f"i-PI at {self.address} sent {printable(raw)} where serve expected an i-PI message "
                            f"header ({one_of(IPI_MESSAGES)}, {HEADER_BYTES} bytes padded with spaces); "
                            "is the address an i-PI server?")
        return name.decode("ascii")

    def recv_init(self) -> None:
        """INIT's body: bead index, then a parameter string of at most MAX_INIT_BYTES (read and dropped)."""
        self.recv_int32("INIT's bead index")
        n_bytes = self.recv_int32("INIT's string length")
        if not 0 <= n_bytes <= MAX_INIT_BYTES:
            raise DataError(f"i-PI at {self.address} sent INIT with a string of {n_bytes} bytes "
                            f"(expected 0 to {MAX_INIT_BYTES})")
        self.recv_exactly(n_bytes, "INIT's string")

    def recv_posdata(self, n_atoms_expected: int):
        """POSDATA's body: (cell (3, 3) Å, positions (N, 3) Å). The atom count
        must be `n_atoms_expected`, checked before the positions are read; the
        cell and positions must be finite."""
        from ase.units import Bohr

        cell_bohr = self.recv_array(9, "<f8", "POSDATA's cell").reshape(3, 3).T
        self.recv_exactly(9 * FLOAT64_BYTES, "POSDATA's inverse cell")  # unused: serve inverts the cell itself
        n_atoms = self.recv_int32("POSDATA's atom count")
        if n_atoms != n_atoms_expected:
            raise DataError(f"i-PI at {self.address} sent POSDATA for {n_atoms} atoms; the structure given with "
                            f"--structure has {n_atoms_expected} (it must be the same system, in the same order)")
        positions_bohr = self.recv_array(3 * n_atoms, "<f8", f"POSDATA's positions ({n_atoms} atoms)")
        positions_bohr = positions_bohr.reshape(n_atoms, 3)
        check_finite(cell_bohr, f"i-PI at {self.address} sent POSDATA whose cell is", "entries (row, column)")
        check_finite(positions_bohr, f"i-PI at {self.address} sent POSDATA whose positions are", "atoms")
        return cell_bohr * Bohr, positions_bohr * Bohr


def check_finite(values: np.ndarray, what: str, where: str) -> None:
    """DataError naming the first rows (atoms) or entries of `values` that hold NaN or inf."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    if where == "atoms":
        rows = np.flatnonzero(bad.any(axis=1))
        listed = ", ".join(str(int(i)) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
    else:
        listed = ", ".join(f"({int(i)}, {int(j)})" for i, j in np.argwhere(bad)[:5])
    raise DataError(f"{what} not finite (NaN or inf) at {where} {listed}")


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

    def serve(self, sock, address="i-PI", read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
              on_first_message=None) -> str:
        """One connection, until i-PI says EXIT ("exit") or closes it between
        two messages ("closed"). `on_first_message()` is called once i-PI has
        sent a first valid message. Anything else i-PI sends (bytes that are
        no i-PI message, messages out of order, bad atom counts, NaN, a
        truncated message, silence for `read_timeout_s`) is a DataError."""
        from ase.calculators.socketio import IPIProtocol

        connection, replies = IPIConnection(sock, address, read_timeout_s), IPIProtocol(sock)
        state, result, previous = "NEEDINIT", None, None
        try:
            while True:
                try:
                    message = connection.recv_header(waiting_for_message(previous))
                except ConnectionClosed:
                    return "closed"
                check_order(message, state, address)
                if previous is None and on_first_message is not None:
                    on_first_message()
                previous = message
                try:
                    if message == "EXIT":
                        return "exit"
                    if message == "STATUS":
                        replies.sendmsg(state)
                    elif message == "INIT":
                        connection.recv_init()
                        state = "READY"
                    elif message == "POSDATA":
                        cell, positions = connection.recv_posdata(len(self.atoms))
                        result, state = self.evaluate(cell, positions), "HAVEDATA"
                    elif message == "GETFORCE":
                        replies.sendforce(*result)
                        state = "READY"
                except socket.timeout:  # a send i-PI does not read
                    raise DataError(f"i-PI at {address} read nothing for {read_timeout_s:g} s of serve's answer "
                                    f"to {message} (see --read-timeout-s)") from None
                except (BrokenPipeError, ConnectionResetError):  # i-PI went away while serve answered
                    return "closed"
        finally:
            sock.close()


def waiting_for_message(previous: str | None) -> str:
    """What serve waits for when i-PI's last message was `previous` (None: none yet)."""
    return "its first message (STATUS)" if previous is None else f"its next message (after {previous})"


def check_order(message: str, state: str, address) -> None:
    """DataError if i-PI may not send `message` while serve's status is `state`."""
    expected = EXPECTED_AFTER[state]
    if message in expected:
        return
    why = "before any POSDATA: serve has no positions to compute forces for" if message == "GETFORCE" \
        else f"while serve's status is {state}"
    raise DataError(f"i-PI at {address} sent {message} {why} (expected {one_of(expected)}); "
                    "the messages are out of order")


def serve_until_done(server: ForceServer, address: Address, wait_s: float, log=None,
                     read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> int:
    """Serve i-PI at `address` until it says EXIT. A connection that closes
    without EXIT (i-PI stopped or restarting) is retried for `wait_s` s; if no
    server comes back, the run is over. A server that sends nothing for
    `read_timeout_s` s, or only bytes that are no i-PI message, is a DataError.
    Returns the number of force calls. `log`: where the progress lines go (default: the current stderr)."""
    log = sys.stderr if log is None else log
    connections, last_heard = 0, time.monotonic()
    while True:
        try:
            sock = address.connect(wait_s)
        except DataError:
            if connections == 0:
                raise
            print(f"mtsmlip serve: i-PI at {address} closed the connection and none came back within "
                  f"{wait_s:g} s; stopping", file=log)
            return server.calls
        heard = []

        def connected():
            heard.append(True)
            print(f"mtsmlip serve: connected to i-PI at {address}", file=log)

        if server.serve(sock, address, read_timeout_s, on_first_message=connected) == "exit":
            return server.calls
        if heard:
            connections, last_heard = connections + 1, time.monotonic()
        else:  # closed before its first message: retried like a refused connection, not forever
            wait_for_speaking_server(address, wait_s, last_heard)


def wait_for_speaking_server(address: Address, wait_s: float, last_heard: float) -> None:
    """After a connection closed before any message: a pause before the next
    try, or DataError once `wait_s` s have passed since i-PI last spoke."""
    if time.monotonic() - last_heard <= wait_s:
        time.sleep(0.1)
        return
    raise DataError(f"--address {address}: for {wait_s:g} s the server there accepted connections and closed each "
                    "before sending any i-PI message (is it an i-PI server? see --wait-s)")


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
    calls = serve_until_done(server, address, args.wait_s, read_timeout_s=args.read_timeout_s)
    print(f"mtsmlip serve: i-PI ended; {calls} force calls served", file=sys.stderr)
    return 0

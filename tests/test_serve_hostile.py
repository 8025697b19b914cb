"""`mtsmlip serve` against an i-PI that misbehaves: bytes that are no i-PI
message, messages out of order, NaN positions or cell, impossible atom counts,
truncated messages and silence each end in a named error (exit code 2, no
traceback) within seconds; a well-behaved i-PI is still served.

The fake i-PI is a real TCP listener on localhost (port 0: no race for a port)
that plays a script to the first client that connects, then stops listening."""

import socket
import threading
import time

import ase.io
import numpy as np
import pytest
from ase.calculators.socketio import IPIProtocol
from ase.units import Bohr

import mtsmlip
from mtsmlip.cli import main
from tests.systems import small_water_box, write_tiny_pair

SECONDS_ALLOWED = 8.0  # each hostile case ends well within this (model loading included)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(tiny pair directory, structure file, atoms): what serve serves."""
    root = tmp_path_factory.mktemp("serve_hostile")
    atoms = small_water_box(seed=3)
    ase.io.write(root / "water.extxyz", atoms)
    return write_tiny_pair(root / "pair"), root / "water.extxyz", atoms


# ---- the fake i-PI -------------------------------------------------------------------
class FakeIPI:
    """Accepts one connection and plays `script(conn)`; then, unless the script
    returned "close", keeps the connection open until serve hangs up."""

    def __init__(self, script):
        self.script, self.results = script, []
        self.listener = socket.create_server(("localhost", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.play, daemon=True)
        self.thread.start()

    def play(self):
        self.listener.settimeout(20)
        try:
            conn, _ = self.listener.accept()
        finally:
            self.listener.close()  # one client only: a reconnect finds nobody
        with conn:
            conn.settimeout(20)
            try:
                if self.script(conn, self.results) == "close":
                    return
                while conn.recv(4096):  # until serve closes its end
                    pass
            except OSError:
                pass


def header(name: str) -> bytes:
    return name.encode("ascii").ljust(12)


def recv_exactly(conn, n_bytes: int) -> bytes:
    data = b""
    while len(data) < n_bytes:
        chunk = conn.recv(n_bytes - len(data))
        assert chunk, "serve closed the connection"
        data += chunk
    return data


def handshake(conn) -> None:
    """STATUS, INIT, STATUS as i-PI does: serve answers NEEDINIT, then READY."""
    conn.sendall(header("STATUS"))
    assert recv_exactly(conn, 12) == header("NEEDINIT")
    conn.sendall(header("INIT") + np.int32(0).tobytes() + np.int32(1).tobytes() + b"\0")
    conn.sendall(header("STATUS"))
    assert recv_exactly(conn, 12) == header("READY")


def posdata_body(cell_A, positions_A, n_atoms=None) -> bytes:
    """POSDATA's body in i-PI's units and layout: cell, inverse cell, atom count, positions."""
    n_atoms = len(positions_A) if n_atoms is None else n_atoms
    inverse_cell = np.linalg.pinv(np.where(np.isfinite(cell_A), cell_A, 0.0))  # LAPACK may hang on inf
    return ((np.asarray(cell_A).T / Bohr).astype("<f8").tobytes()
            + (inverse_cell * Bohr).astype("<f8").tobytes()
            + np.int32(n_atoms).tobytes()
            + (np.asarray(positions_A) / Bohr).astype("<f8").tobytes())


def run_main(argv, limit_s: float = 2 * SECONDS_ALLOWED):
    """(exit code, seconds) of mtsmlip.cli.main(argv), run in a thread so that
    a serve that hangs fails the test after `limit_s` instead of hanging it."""
    done, started = {}, time.monotonic()
    thread = threading.Thread(target=lambda: done.update(code=main(argv)), daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"serve still runs after {limit_s:g} s"
    return done.get("code"), time.monotonic() - started


def serve_argv(inputs, port, *options):
    pair, structure, _atoms = inputs
    return ["serve", "--model", str(pair), "--part", "fast", "--structure", str(structure),
            "--address", f"localhost:{port}", "--wait-s", "0.5", *options]


def run_serve(inputs, ipi, *options):
    """(exit code, seconds) of `mtsmlip serve --part fast` against `ipi`."""
    return run_main(serve_argv(inputs, ipi.port, *options))


def assert_named_error(code, seconds, err, *parts):
    assert code == 2, err
    assert seconds < SECONDS_ALLOWED, (seconds, err)
    assert "Traceback" not in err
    assert "mtsmlip serve: error:" in err, err
    for part in parts:
        assert part in err, (part, err)


# ---- hostile servers -----------------------------------------------------------------
def test_random_bytes_are_named_not_an_ipi_message(inputs, capsys):
    ipi = FakeIPI(lambda conn, _: conn.sendall(np.random.default_rng(0).bytes(64)))
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    err = capsys.readouterr().err
    assert_named_error(code, seconds, err, f"i-PI at localhost:{ipi.port} sent '", "\\x",
                       "where serve expected an i-PI message header (STATUS, INIT, POSDATA, GETFORCE or EXIT")
    assert "connected to i-PI" not in err  # it never spoke i-PI


def test_getforce_before_posdata_is_out_of_order(inputs, capsys):
    def script(conn, _):
        handshake(conn)
        conn.sendall(header("GETFORCE"))

    ipi = FakeIPI(script)
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    err = capsys.readouterr().err
    assert_named_error(code, seconds, err, f"i-PI at localhost:{ipi.port} sent GETFORCE before any POSDATA",
                       "out of order")
    assert f"connected to i-PI at localhost:{ipi.port}" in err  # STATUS was a valid first message


@pytest.mark.parametrize("field", ["positions", "cell"])
def test_nan_in_posdata_is_named(inputs, capsys, field):
    atoms = inputs[2]
    positions, cell = atoms.positions.copy(), atoms.cell.array.copy()
    if field == "positions":
        positions[3, 1] = np.nan
        expected = "sent POSDATA whose positions are not finite (NaN or inf) at atoms 3"
    else:
        cell[0, 0] = np.inf
        expected = "sent POSDATA whose cell is not finite (NaN or inf) at entries (row, column) (0, 0)"

    def script(conn, _):
        handshake(conn)
        conn.sendall(header("POSDATA") + posdata_body(cell, positions))

    ipi = FakeIPI(script)
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    assert_named_error(code, seconds, capsys.readouterr().err, expected)


@pytest.mark.parametrize("n_atoms", [2**31 - 1, -5, 0])
def test_an_atom_count_out_of_range_is_refused_before_reading_positions(inputs, capsys, n_atoms):
    """Only the header, cell, inverse cell and count are sent: serve must refuse
    the count without waiting for (or allocating) the positions."""
    atoms = inputs[2]

    def script(conn, _):
        handshake(conn)
        conn.sendall(header("POSDATA") + posdata_body(atoms.cell.array, np.zeros((0, 3)), n_atoms=n_atoms))

    ipi = FakeIPI(script)
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    assert_named_error(code, seconds, capsys.readouterr().err,
                       f"sent POSDATA for {n_atoms} atoms; the structure given with --structure has {len(atoms)}")
    assert seconds < 5  # not the read timeout


@pytest.mark.parametrize("cut", ["positions", "header"])
def test_a_truncated_message_is_named(inputs, capsys, cut):
    atoms = inputs[2]
    body = posdata_body(atoms.cell.array, atoms.positions)
    positions_bytes = len(atoms) * 3 * 8

    def script(conn, _):
        if cut == "header":
            conn.sendall(b"STAT")
        else:
            handshake(conn)
            conn.sendall(header("POSDATA") + body[:len(body) - positions_bytes // 2])
        return "close"

    ipi = FakeIPI(script)
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    expected = ("in the middle of a message header: 4 of its 12 bytes came" if cut == "header" else
                f"in the middle of POSDATA's positions ({len(atoms)} atoms): {positions_bytes // 2} of its "
                f"{positions_bytes} bytes came")
    assert_named_error(code, seconds, capsys.readouterr().err,
                       f"i-PI at localhost:{ipi.port} closed the connection", expected, "truncated")


def test_a_silent_server_is_a_named_timeout(inputs, capsys):
    ipi = FakeIPI(lambda conn, _: None)  # accepts, never speaks
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "1")
    err = capsys.readouterr().err
    assert_named_error(code, seconds, err, f"i-PI at localhost:{ipi.port} sent nothing for 1 s while serve "
                                           "waited for its first message (STATUS)", "--read-timeout-s")
    assert "connected to i-PI" not in err


def test_a_server_that_hangs_up_at_once_is_not_retried_forever(inputs, capsys):
    """A listener that accepts and closes every connection before a message:
    retried for --wait-s, then a named error (not a loop without end)."""
    listener = socket.create_server(("localhost", 0))
    port, stop = listener.getsockname()[1], threading.Event()

    def hang_up():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        code, seconds = run_main(serve_argv(inputs, port, "--read-timeout-s", "5"))
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert_named_error(code, seconds, capsys.readouterr().err, f"--address localhost:{port}: for 0.5 s",
                       "closed each before sending any i-PI message")


def test_read_timeout_must_be_positive(inputs, capsys):
    assert main(serve_argv(inputs, 1, "--read-timeout-s", "0")) == 2
    assert "argument --read-timeout-s: must be a finite number > 0 (got '0')" in capsys.readouterr().err


@pytest.mark.parametrize("n_bytes", [2**31 - 1, -1])
def test_an_init_string_length_out_of_range_is_refused(inputs, capsys, n_bytes):
    def script(conn, _):
        conn.sendall(header("INIT") + np.int32(0).tobytes() + np.int32(n_bytes).tobytes())

    ipi = FakeIPI(script)
    code, seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    assert_named_error(code, seconds, capsys.readouterr().err,
                       f"i-PI at localhost:{ipi.port} sent INIT with a string of {n_bytes} bytes (expected 0 to")
    assert seconds < 5  # not the read timeout


# ---- a well-behaved i-PI -------------------------------------------------------------
def test_a_well_behaved_exchange_is_served(inputs, capsys):
    """ASE's own i-PI protocol (as its SocketServer speaks it): forces in i-PI
    units come back as the model's; EXIT ends serve with code 0."""
    pair, _structure, atoms = inputs

    def script(conn, results):
        protocol = IPIProtocol(conn)
        results.append(protocol.calculate(atoms.positions, atoms.cell.array))
        protocol.end()

    ipi = FakeIPI(script)
    code, _seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    ipi.thread.join(timeout=10)
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"connected to i-PI at localhost:{ipi.port}" in err and "1 force calls served" in err
    expected = atoms.copy()
    expected.calc = mtsmlip.load(pair).calculator("fast")
    assert ipi.results[0]["energy"] == pytest.approx(expected.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(ipi.results[0]["forces"], expected.get_forces(), atol=1e-9)


def test_a_clean_close_between_messages_is_waited_for_then_ends(inputs, capsys):
    """i-PI closing after an exchange (stopped, or restarting from RESTART) is
    not an error: serve waits --wait-s for it to come back, then stops."""
    atoms = inputs[2]

    def script(conn, results):
        results.append(IPIProtocol(conn).calculate(atoms.positions, atoms.cell.array))
        return "close"

    ipi = FakeIPI(script)
    code, _seconds = run_serve(inputs, ipi, "--read-timeout-s", "5")
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"i-PI at localhost:{ipi.port} closed the connection and none came back within 0.5 s" in err
    assert "1 force calls served" in err

"""Files on disk, safely: atomic writes, JSON, content fingerprints and output
folders checked before anything is written (the ground floor: no torch, no ase).

Writes go to a temporary file in the same folder that is renamed over the
target, so a reader (or a resumed run after a SIGKILL) never sees half a file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import DataError


def atomic_write(path, write_fn) -> None:
    """Write a file atomically: `write_fn(tmp_path)` then rename over `path`,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    atomic_write(path, write)


def read_json(path, what: str = "JSON file") -> dict:
    """The JSON object in `path`; DataError naming the file if it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        value = json.loads(path.read_text())
    except RecursionError:
        raise DataError(f"{path}: {what} is nested too deep to be a file mtsmlip writes") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {what} is damaged, not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} does not hold a JSON object")
    return value


PLAIN_SCALARS = (str, int, float, bool, type(None))
MAX_CONFIG_DEPTH = 32


def check_plain_config(value, where: str, field: str = "config", depth: int = 0) -> None:
    """DataError naming `where` and the field unless `value` is plain data
    (dicts with string keys, lists, strings, numbers, booleans, None) holding no
    ``${...}`` interpolation: hydra and OmegaConf resolve those when a config is
    used, and a resolver (``oc.decode``, ``oc.env``) turns a string read from disk
    into code to run or a secret to read. Used on every config read from a file."""
    at = f"{where}, field '{field}'"
    if depth > MAX_CONFIG_DEPTH:
        raise DataError(f"{at}: nested more than {MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool) or "${" in str(key):
                raise DataError(f"{at}: key {key!r} is not plain text or an integer")
            check_plain_config(item, where, f"{field}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain_config(item, where, f"{field}[{i}]", depth + 1)
    elif not isinstance(value, PLAIN_SCALARS):
        raise DataError(f"{at}: a {type(value).__name__}, not plain data (text, numbers, lists, mappings)")
    elif isinstance(value, str) and "${" in value:
        raise DataError(f"{at}: holds an interpolation '${{...}}' ({value[:60]!r}); configs read from "
                        "files are plain data and never resolved (a resolver can run code)")


def read_yaml(path, what: str = "YAML file"):
    """The plain data in the YAML file `path` (:func:`check_plain_config`); DataError
    naming the file if it is missing, damaged, or tagged to build objects (``!!python/...``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        value = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not text ({exc.reason})") from None
    except RecursionError:
        raise DataError(f"{path}: {what} is nested too deep to be a config") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: {what} is not plain YAML ({first})") from None
    check_plain_config(value, str(path), what)
    return value


def sha256_of(path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path) -> dict:
    """What identifies a file's content: its absolute path, size and SHA-256."""
    path = Path(path)
    return {"file": str(path.resolve()), "size_bytes": path.stat().st_size, "sha256": sha256_of(path)}


def check_same_content(recorded: dict, now: dict, what: str) -> None:
    """DataError if the file fingerprinted as `now` is not the one `recorded`
    describes (both :func:`fingerprint`s, so each file is hashed once). The path
    may differ (data moved); the content must not. `what` names the recorded
    file, e.g. "the fast model that manifest.json lists"."""
    if (recorded.get("sha256"), recorded.get("size_bytes")) != (now["sha256"], now["size_bytes"]):
        raise DataError(
            f"{now['file']}: not {what}: the content differs (recorded {recorded.get('file')}, "
            f"{recorded.get('size_bytes')} bytes, sha256 {str(recorded.get('sha256'))[:12]}…; this file "
            f"{now['size_bytes']} bytes, sha256 {now['sha256'][:12]}…)")


def check_output_dir(path, option: str = "--out") -> Path:
    """Refuse an output folder that is a file, lies under a file, or cannot be
    written, before anything is written. Creates nothing; returns the path."""
    path = Path(path)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise DataError(f"{path}: {option} is a symbolic link to nothing ({os.readlink(path)})") from None
    except OSError as exc:  # a symlink loop (ELOOP), a name too long, a folder that cannot be entered
        raise DataError(f"{path}: {option} cannot be used ({exc.strerror})") from None
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: {option} is a file, not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{path}: {option} lies under {existing}, which is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise DataError(f"{path}: {option} cannot be written ({existing}: {exc.strerror})") from None
    return path


LOCK_FILE = ".mtsmlip.lock"


@contextlib.contextmanager
def output_lock(out_dir, command: str, option: str = "--out"):
    """Hold an exclusive lock on the output folder `out_dir` while a run writes
    into it: a second run into the same folder gets a DataError naming the process
    that holds it. The lock is the kernel's (flock), so a killed run releases it.
    A folder this made and left holding nothing but the lock is removed again, so
    a run refused on bad input writes nothing."""
    out_dir = check_output_dir(out_dir, option)
    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out_dir}: {option} cannot be made ({exc.strerror})") from None
    path = out_dir / LOCK_FILE
    fd = open_lock_file(path, option)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            raise DataError(f"{out_dir}: {option} is in use by another run ({holder}); wait for it to end, "
                            f"or use another {option}") from None
        locked = True
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}, mtsmlip {command}, since {started}\n".encode(), 0)
        yield out_dir
    finally:
        if locked and made and run_files_in(out_dir) == []:  # only the holder of the lock tidies up
            with contextlib.suppress(OSError):
                path.unlink()
                out_dir.rmdir()
        os.close(fd)


def open_lock_file(path: Path, option: str) -> int:
    """The lock file, opened without following a symbolic link (a link planted
    there would have the run truncate the file it points to); DataError unless
    it is a regular file of this user."""
    import stat

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DataError(f"{path}: the lock file of {option} cannot be opened ({exc.strerror}; a symbolic "
                        "link there is refused)") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise DataError(f"{path}: the lock file of {option} is not a regular file of this user")
    return fd


def run_files_in(out_dir) -> list[Path]:
    """What a folder holds besides the lock of the run writing it (sorted)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.name != LOCK_FILE)

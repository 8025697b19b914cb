"""Bad input on the command line: every case ends in exit code 2 and one message
that names the file, frame and field or the option, before anything is written.

The cases below also generate docs/bad_input.md (input -> message), and this test
fails if the document and the messages differ, so the two cannot drift apart:
``MTSMLIP_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py`` rewrites it.
"""

import json
import os
import re
import shutil
from pathlib import Path

import ase.io
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
import numpy as np
import pytest
import torch
import yaml

from mtsmlip.cli import main
from tests.systems import small_water_box
from tests.systems import write_tiny_pair
from tests.training_helpers import TINY_CONFIG, config_file, labelled_frames, trained_dir, write_frames

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"


class Plant:
    """Written when unpickled: proof that loading a file ran code from it."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def malicious_model(path, evidence):
    torch.save({"format": "mtsmlip-model-1", "config": {}, "state_dict": {}, "payload": Plant(evidence)}, path)


def build_inputs(root: Path) -> dict:
    """Every file the cases use, under `root` (shown as DIR in the document)."""
    p = {"root": root}
    p["pair"] = write_tiny_pair(root / "pair")
    p["pair2"] = root / "pair2"
    shutil.copytree(p["pair"], p["pair2"])
    state = torch.load(p["pair2"] / "slow.pt", weights_only=True)
    state["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, p["pair2"] / "slow.pt")
    manifest = json.loads((p["pair2"] / "manifest.json").read_text())
    del manifest["model_files"]  # another, equally valid model directory
    (p["pair2"] / "manifest.json").write_text(json.dumps(manifest))

    water = small_water_box()
    ase.io.write(root / "water.extxyz", water)
    close = water.copy()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    ase.io.write(root / "close.extxyz", close)
    nan = water.copy()
    nan.positions[2, 1] = np.nan
    ase.io.write(root / "nan.extxyz", nan)
    ase.io.write(root / "molecule.extxyz", small_water_box(n_side=1, vacuum=True))
    slab = small_water_box(n_side=2)
    slab.pbc = [True, True, False]
    ase.io.write(root / "slab.extxyz", slab)

    frames = labelled_frames(16)
    frames[3].positions[5] = frames[3].positions[4]
    write_frames(root / "coincident.extxyz", frames)
    write_frames(root / "good.extxyz", labelled_frames(16))
    (root / "epochs0.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "epochs": 0}))
    (root / "a_file").write_text("not a directory\n")
    (root / "a_file.nequip.zip").write_text("someone's earlier package\n")
    silicon = bulk("Si", "diamond", 5.43, cubic=True)
    silicon.calc = SinglePointCalculator(silicon, energy=0.0, forces=np.zeros((len(silicon), 3)))
    write_frames(root / "silicon.extxyz", [silicon] * 4)
    (root / "junk.nequip.zip").write_bytes(b"not a zip archive")
    (root / "python_tag.yaml").write_text("epochs: !!python/object/apply:os.getpid []\n")
    (root / "interpolation.yaml").write_text("learning_rate: ${oc.env:HOME}\n")
    (root / "loop").symlink_to("loop")
    lone = []
    for k in range(24):
        atom = Atoms("O", positions=[[0.0, 0.0, 0.01 * k]], cell=np.eye(3) * 10.0)
        atom.calc = SinglePointCalculator(atom, energy=-1.0 - 0.01 * k, forces=np.zeros((1, 3)))
        lone.append(atom)
    write_frames(root / "single_atoms.extxyz", lone)

    for name, damage in (("malicious", None), ("truncated", "truncate"), ("flipped", "flip"),
                         ("foreign_builder", "builder")):
        shutil.copytree(p["pair"], root / name)
        fast = root / name / "fast.pt"
        if damage != "flip":  # no recorded hashes, so the file itself is read: its own guards must hold
            manifest = json.loads((root / name / "manifest.json").read_text())
            del manifest["model_files"]
            (root / name / "manifest.json").write_text(json.dumps(manifest))
        if damage is None:
            malicious_model(fast, root / "PWNED")
        elif damage == "truncate":
            fast.write_bytes(fast.read_bytes()[:2000])
        elif damage == "flip":
            data = bytearray(fast.read_bytes())
            data[len(data) // 2] ^= 0x01
            fast.write_bytes(bytes(data))
        else:
            payload = torch.load(fast, weights_only=True)
            payload["config"]["_target_"] = "os.system"
            torch.save(payload, fast)
    assert main(md_args(p, "run", "--steps", "2")) == 0
    shutil.copytree(root / "run", root / "run_damaged")
    restart = root / "run_damaged" / "restart.npz"
    restart.write_bytes(restart.read_bytes()[:300])
    return p


def md_args(p, out, *extra, structure="water.extxyz", model="pair"):
    """`mtsmlip md` on the tiny pair; an option in `extra` replaces its default here."""
    options = {"--model": str(p[model]), "--structure": str(p["root"] / structure), "--steps": "2",
               "--timestep-fs": "0.25", "--temperature-K": "100", "--out": str(p["root"] / out)}
    flags = []
    for i, arg in enumerate(extra):
        if arg.startswith("--") and (i + 1 == len(extra) or extra[i + 1].startswith("--")):
            flags.append(arg)
        elif arg.startswith("--"):
            options[arg] = extra[i + 1]
    return ["md", *(x for kv in options.items() for x in kv), "--no-progress", *flags]


def train_args(p, data="good.extxyz", out="t", *extra):
    return ["train", "--data", str(p["root"] / data), "--out", str(p["root"] / out), *extra]


def eval_args(p, model, *extra):
    return ["eval", "--model", str(p["root"] / model), "--data", str(p["root"] / "good.extxyz"), *extra]


def compare_args(p, *extra, structure="water.extxyz"):
    return ["compare", "--model", str(p["pair"]), "--structure", str(p["root"] / structure),
            "--ps", "0.01", "--out", str(p["root"] / "cmp"), "--no-progress", "--repeats", "1", *extra]


def distill_args(p, teacher, data="good.extxyz"):
    return ["distill", "--teacher", teacher, "--data", str(p["root"] / data), "--out", str(p["root"] / "d"),
            "--no-progress"]


def serve_args(p, *extra, structure="water.extxyz", part="fast", address="unix:mtsmlip-nobody-listens"):
    return ["serve", "--model", str(p["pair"]), "--part", part, "--address", address,
            "--structure", str(p["root"] / structure), "--wait-s", "0.5", *extra]


def ipi_input_args(p, *extra, structure="water.extxyz"):
    return ["ipi-input", "--model", str(p["pair"]), "--structure", str(p["root"] / structure),
            "--out", str(p["root"] / "ipi"), *extra]


def export_args(p, part="fast", to="fast.nequip.zip"):
    return ["export", "--model", str(p["pair"]), "--part", part, "--to", str(p["root"] / to)]


def eval_split_on_other_file(p):
    other = p["root"] / "other_same_count.extxyz"
    write_frames(other, labelled_frames(16, seed0=100))
    return ["eval", "--model", str(trained_dir()), "--data", str(other), "--split", "test"]


# (input, argv from the inputs). Every case must exit 2 and write nothing new.
CASES = [
    ("training frame with two coincident atoms", lambda p: train_args(p, "coincident.extxyz")),
    ("`--epochs 0`", lambda p: train_args(p, "good.extxyz", "t", "--epochs", "0")),
    ("`--epochs -1`", lambda p: train_args(p, "good.extxyz", "t", "--epochs", "-1")),
    ("`epochs: 0` in the --config YAML",
     lambda p: train_args(p, "good.extxyz", "t", "--config", str(p["root"] / "epochs0.yaml"))),
    ("`--seed -3`", lambda p: train_args(p, "good.extxyz", "t", "--seed", "-3")),
    ("`--train-frames 0`", lambda p: train_args(p, "good.extxyz", "t", "--train-frames", "0")),
    ("`--out` is a file", lambda p: train_args(p, "good.extxyz", "a_file")),
    ("`--out` under a file", lambda p: train_args(p, "good.extxyz", "a_file/sub")),
    ("`--out` cannot be written", lambda p: ["train", "--data", str(p["root"] / "good.extxyz"),
                                             "--out", "/proc/mtsmlip-out"]),
    ("starting structure with atoms 0.3 Å apart", lambda p: md_args(p, "o1", structure="close.extxyz")),
    ("starting structure with a NaN position", lambda p: md_args(p, "o2", structure="nan.extxyz")),
    ("`--temperature-K -5`", lambda p: md_args(p, "o3", "--temperature-K", "-5")),
    ("`--skin-A -1`", lambda p: md_args(p, "o4", "--skin-A", "-1")),
    ("`--steps 0`", lambda p: md_args(p, "o5", "--steps", "0")),
    ("`--timestep-fs nan`", lambda p: md_args(p, "o6", "--timestep-fs", "nan")),
    ("`--n-inner 0`", lambda p: md_args(p, "o7", "--n-inner", "0")),
    ("`--friction-per-fs 0`", lambda p: md_args(p, "o8", "--thermostat", "langevin", "--friction-per-fs", "0")),
    ("`--traj-every 0`", lambda p: md_args(p, "o9", "--traj-every", "0")),
    ("`--tau-fs 0`", lambda p: md_args(p, "o10", "--thermostat", "bussi", "--tau-fs", "0")),
    ("Langevin's `--friction-per-fs` given to Bussi",
     lambda p: md_args(p, "o11", "--thermostat", "bussi", "--friction-per-fs", "0.01")),
    ("`--device tpu`", lambda p: md_args(p, "o12", "--device", "tpu")),
    ("`--species-friction-per-fs H` (no rate)",
     lambda p: md_args(p, "o13", "--thermostat", "langevin", "--species-friction-per-fs", "H")),
    ("`--species-friction-per-fs Si=0.1` on water",
     lambda p: md_args(p, "o14", "--thermostat", "langevin", "--species-friction-per-fs", "Si=0.1")),
    ("`--species-friction-per-fs` given to Bussi",
     lambda p: md_args(p, "o15", "--thermostat", "bussi", "--species-friction-per-fs", "H=0.1")),
    ("`--n-inner auto` with atoms at rest (no `--temperature-K`)",
     lambda p: [a for a in md_args(p, "o16", "--n-inner", "auto") if a not in ("--temperature-K", "100")]),
    ("`compare --n-inner 2,auto,auto`", lambda p: compare_args(p, "--n-inner", "2,auto,auto")),
    ("`md --resume` with another `--model`", lambda p: md_args(p, "run", "--resume", model="pair2")),
    ("`md --resume` from a truncated restart.npz", lambda p: md_args(p, "run_damaged", "--resume")),
    ("`md --resume --steps 1` after 2 steps", lambda p: md_args(p, "run", "--resume", "--steps", "1")),
    ("`--model` is a file", lambda p: ["eval", "--model", str(p["root"] / "a_file"),
                                        "--data", str(p["root"] / "good.extxyz")]),
    ("model file that runs code when unpickled", lambda p: eval_args(p, "malicious")),
    ("model config naming a foreign builder (`os.system`)", lambda p: eval_args(p, "foreign_builder")),
    ("truncated model file", lambda p: eval_args(p, "truncated")),
    ("model file with one bit flipped", lambda p: eval_args(p, "flipped")),
    ("`eval --frames 1:5:0`", lambda p: eval_args(p, "pair", "--frames", "1:5:0")),
    ("`eval --split test` on another file with as many frames", eval_split_on_other_file),
    ("`compare --n-inner 0,2`", lambda p: compare_args(p, "--n-inner", "0,2")),
    ("`compare --ps -1`", lambda p: compare_args(p, "--ps", "-1")),
    ("`compare` on a slab (periodic in 2 directions)", lambda p: compare_args(p, structure="slab.extxyz")),
    ("`distill` with a teacher whose package is not installed",
     lambda p: distill_args(p, "no_such_package:Calculator")),
    ("`distill` with a teacher file that is not a nequip model",
     lambda p: distill_args(p, str(p["root"] / "junk.nequip.zip"))),
    ("`distill` with a teacher lacking a species of the data (EMT has no Si)",
     lambda p: distill_args(p, "ase.calculators.emt:EMT", "silicon.extxyz")),
    ("`--teacher` for a pair that holds its own models", lambda p: eval_args(p, "pair", "--teacher", "x:Y")),
    ("`serve --part medium`", lambda p: serve_args(p, part="medium")),
    ("`serve --address water` (neither unix:NAME nor HOST:PORT)", lambda p: serve_args(p, address="water")),
    ("`serve` with no i-PI listening (`--wait-s 0.5`)", lambda p: serve_args(p)),
    ("`serve --read-timeout-s 0`", lambda p: serve_args(p, "--read-timeout-s", "0")),
    ("`serve` on a structure with a species the model lacks", lambda p: serve_args(p, structure="silicon.extxyz")),
    ("`ipi-input --beads 4 --contract-beads 3`",
     lambda p: ipi_input_args(p, "--beads", "4", "--contract-beads", "3", "--temperature-K", "300")),
    ("`ipi-input --beads 4` without a temperature", lambda p: ipi_input_args(p, "--beads", "4")),
    ("`ipi-input` on a structure with a species the model lacks",
     lambda p: ipi_input_args(p, structure="silicon.extxyz")),
    ("`export --to` a name without .nequip.zip", lambda p: export_args(p, to="fast.zip")),
    ("`export --part total` (not one model)", lambda p: export_args(p, part="total")),
    ("`--config` YAML with a `!!python` tag", lambda p: train_args(p, "good.extxyz", "t", "--config",
                                                                  str(p["root"] / "python_tag.yaml"))),
    ("`--config` YAML with a `${...}` interpolation", lambda p: train_args(p, "good.extxyz", "t", "--config",
                                                                       str(p["root"] / "interpolation.yaml"))),
    ("training frames of single atoms (no neighbours)",
     lambda p: train_args(p, "single_atoms.extxyz", "t", "--config", str(config_file()))),
    ("`--out` is a symbolic link to itself", lambda p: train_args(p, "good.extxyz", "loop")),
    ("`md --n-inner 100000000`", lambda p: md_args(p, "o17", "--n-inner", "100000000")),
    ("`compare --n-inner 2,100000000`", lambda p: compare_args(p, "--n-inner", "2,100000000")),
    ("`compare --ps 1000000` (samples that would not fit in memory)", lambda p: compare_args(p, "--ps", "1000000")),
    ("`compare --spectrum-ps 100000`", lambda p: compare_args(p, "--spectrum-ps", "100000")),
    ("`compare --repeats 0`", lambda p: compare_args(p, "--repeats", "0")),
    ("`compare --tolerance diffusion=0.1` with one run per n (`--repeats 1`)",
     lambda p: compare_args(p, "--tolerance", "diffusion=0.1")),
    ("`compare --repeats 2 --tolerance difusion=0.1` (a misspelt observable)",
     lambda p: compare_args(p, "--repeats", "2", "--tolerance", "difusion=0.1")),
    ("`demo --molecules 10000000`", lambda p: ["demo", "--molecules", "10000000", "--out", str(p["root"] / "demo2")]),
    ("`md --replicas 100000000` of a molecule",
     lambda p: md_args(p, "o18", "--replicas", "100000000", "--thermostat", "langevin", structure="molecule.extxyz")),
    ("`md --resume` with another `--seed`", lambda p: md_args(p, "run", "--resume", "--steps", "4", "--seed", "9")),
    ("`distill --frames 2` of teacher MD (no --data)",
     lambda p: ["distill", "--teacher", "ase.calculators.emt:EMT", "--structure", str(p["root"] / "water.extxyz"),
                "--frames", "2", "--out", str(p["root"] / "d2"), "--no-progress"]),
    ("`export --to` a file that exists", lambda p: export_args(p, to="a_file.nequip.zip")),
    ("`demo --molecules 0`", lambda p: ["demo", "--molecules", "0", "--out", str(p["root"] / "demo")]),
]


def out_path(argv):
    return Path(argv[argv.index("--out") + 1]) if "--out" in argv else None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """(input, command, message) per case, paths shown relative to DIR."""
    root = tmp_path_factory.mktemp("bad_input")
    inputs = build_inputs(root)
    rows = []
    for name, argv_of in CASES:
        argv = argv_of(inputs)
        out = out_path(argv)
        existed = out is not None and out.exists()
        code, err = run_captured(argv)
        rows.append({"input": name, "argv": argv, "code": code, "err": err,
                     "wrote": out is not None and not existed and out.exists()})
    return root, rows


def run_captured(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def normalised(text: str, root: Path) -> str:
    from tests.training_helpers import workspace

    text = text.replace(str(root), "DIR").replace(str(workspace()), "DIR")
    text = re.sub(r"sha256 [0-9a-f]{12}…", "sha256 …", text)
    # what differs between machines and runs: the memory, and the size of a file written with floats in it
    text = re.sub(r"this machine's [0-9.]+ GiB", "this machine's … GiB", text)
    return re.sub(r"\b[0-9]+ bytes, sha256", "… bytes, sha256", text)


def error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if ": error: " in x]
    return lines[-1] if lines else ""


def document(root, rows) -> str:
    head = ["# Bad input and the messages it gets", "",
            "Generated by `tests/test_bad_input.py` (which fails if this file and the messages differ;",
            "`MTSMLIP_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py` rewrites it). Every case",
            "exits with code 2 before anything is written. DIR is the folder holding the inputs.", "",
            "| input | command | message |", "|---|---|---|"]
    body = []
    for row in rows:
        command = " ".join(normalised(a, root) for a in row["argv"])
        message = normalised(error_line(row["err"]), root).replace("|", "\\|")
        body.append(f"| {row['input']} | `mtsmlip {command}` | {message} |")
    return "\n".join(head + body) + "\n"


def test_every_bad_input_exits_2_with_a_named_error_and_writes_nothing(outcomes):
    root, rows = outcomes
    for row in rows:
        assert row["code"] == 2, (row["input"], row["err"])
        assert error_line(row["err"]), (row["input"], row["err"])
        assert "Traceback" not in row["err"], row["input"]
        assert not row["wrote"], f"{row['input']}: wrote {out_path(row['argv'])}"
    assert not (root / "PWNED").exists(), "loading a model file ran code from it"


def test_messages_name_what_is_wrong(outcomes):
    _, rows = outcomes
    by_input = {row["input"]: error_line(row["err"]) for row in rows}
    expected = {
        "training frame with two coincident atoms": ["coincident.extxyz, frame 3", "'positions'", "atoms 4 and 5",
                                                     "0.000 Å"],
        "`--epochs -1`": ["--epochs", ">= 1"],
        "`epochs: 0` in the --config YAML": ["'epochs'", ">= 1"],
        "`--seed -3`": ["--seed"],
        "starting structure with atoms 0.3 Å apart": ["close.extxyz", "atoms 0 and 1", "0.300 Å"],
        "starting structure with a NaN position": ["nan.extxyz", "'positions'", "NaN"],
        "`--temperature-K -5`": ["--temperature-K"],
        "`--skin-A -1`": ["--skin-A"],
        "`md --resume` with another `--model`": ["restart.npz", "provenance", "model_sha256"],
        "`md --resume` from a truncated restart.npz": ["restart.npz", "damaged"],
        "model file that runs code when unpickled": ["fast.pt", "refused"],
        "model config naming a foreign builder (`os.system`)": ["fast.pt", "'os.system'", "not an allowed"],
        "truncated model file": ["fast.pt", "damaged"],
        "model file with one bit flipped": ["fast.pt", "the content differs"],
        "`eval --frames 1:5:0`": ["--frames", "step"],
        "`eval --split test` on another file with as many frames": ["other_same_count.extxyz", "not the data file the model was trained on"],
        "`--out` cannot be written": ["/proc/mtsmlip-out", "cannot be written"],
        "`distill` with a teacher whose package is not installed": ["--teacher", "cannot import no_such_package"],
        "`distill` with a teacher file that is not a nequip model": ["junk.nequip.zip", "nequip could not load"],
        "`distill` with a teacher lacking a species of the data (EMT has no Si)":
            ["silicon.extxyz", "frame 0", "['Si']", "No EMT-potential for Si"],
        "`serve --part medium`": ["--part", "'medium'"],
        "`serve --address water` (neither unix:NAME nor HOST:PORT)": ["--address 'water'", "unix:NAME or HOST:PORT"],
        "`serve` with no i-PI listening (`--wait-s 0.5`)": ["unix:mtsmlip-nobody-listens", "within 0.5 s"],
        "`serve` on a structure with a species the model lacks": ["Si"],
        "`serve --read-timeout-s 0`": ["--read-timeout-s", "> 0"],
        "`ipi-input --beads 4 --contract-beads 3`": ["--contract-beads 3", "divide"],
        "`ipi-input` on a structure with a species the model lacks": ["Si"],
        "`export --to` a name without .nequip.zip": ["fast.zip", ".nequip.zip"],
        "`--config` YAML with a `!!python` tag": ["python_tag.yaml", "not plain YAML"],
        "`--config` YAML with a `${...}` interpolation": ["interpolation.yaml", "'config file.learning_rate'",
                                                          "interpolation"],
        "training frames of single atoms (no neighbours)": ["single_atoms.extxyz", "no atom", "neighbour"],
        "`--out` is a symbolic link to itself": ["loop", "symbolic links"],
        "`md --n-inner 100000000`": ["--n-inner", "from 1 to 1000"],
        "`compare --n-inner 2,100000000`": ["--n-inner", "from 1 to 1000"],
        "`compare --ps 1000000` (samples that would not fit in memory)": ["--ps 1e+06", "GiB in memory"],
        "`compare --spectrum-ps 100000`": ["--spectrum-ps 100000", "GiB in memory"],
        "`compare --repeats 0`": ["--repeats", ">= 1"],
        "`compare --tolerance diffusion=0.1` with one run per n (`--repeats 1`)": ["--tolerance", "--repeats 2 or more"],
        "`compare --repeats 2 --tolerance difusion=0.1` (a misspelt observable)":
            ["--tolerance", "unknown observable 'difusion'", "diffusion"],
        "`demo --molecules 10000000`": ["30000000 atoms in one run", "at most 1000000"],
        "`md --replicas 100000000` of a molecule": ["--replicas 100000000 × 3 atoms", "at most 1000000"],
        "`md --resume` with another `--seed`": ["restart.npz", "provenance", "seed (0)"],
        "`distill --frames 2` of teacher MD (no --data)": ["--frames 2", "at least 3"],
        "`export --to` a file that exists": ["a_file.nequip.zip", "--overwrite"],
    }
    for name, parts in expected.items():
        for part in parts:
            assert part in by_input[name], (name, by_input[name])


def test_the_bad_input_document_matches_the_messages(outcomes):
    text = document(*outcomes)
    if os.environ.get("MTSMLIP_WRITE_DOCS"):
        DOC.write_text(text)
    assert DOC.is_file() and DOC.read_text() == text, \
        "docs/bad_input.md is out of date: MTSMLIP_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py"

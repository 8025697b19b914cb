"""`mtsmlip distill`: make an existing potential (the *teacher*) run several times
faster without retraining it.

Only a fast model is trained, on the teacher's energies and forces (the stage-1
recipe, :func:`mtsmlip.training.stages.distill_stage`); MD then runs r-RESPA
with the fast model every inner step and the correction teacher − fast every
outer step (:mod:`mtsmlip.forces.combinators`), so what is integrated in total is
the teacher itself. The output is a normal model directory: ``fast.pt``, the
teacher (``baseline.pt`` when it is an mtsmlip model; otherwise its spec, which
``md``/``compare``/``eval`` take again as ``--teacher``) and a manifest recording
the teacher and its hash.

Configurations to learn from: frames of a data file (``--data``, relabelled by
the teacher; its split is the training config's, so the held-out frames are the
same as a co-training run's), and/or short Langevin MD with the teacher from a
structure (``--structure``) at the target temperature and 1.5 times it.

The run folder: ``distill.json`` (what was asked, checked on ``--resume``),
``teacher_labels.extxyz`` + ``teacher_labels.json`` (the labelled frames,
written whole or not at all), ``checkpoints/distill/`` (a checkpoint every
epoch; resume continues exactly), then the models and ``manifest.json`` last.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .data import Split, frames_of, read_structure
from .errors import DataError
from .files import atomic_write, atomic_write_json, check_output_dir, fingerprint, output_lock, read_json, run_files_in
from .models import count_parameters, load_model, resolve_model_dir, write_model_dir
from .teacher import external_calculator, first_of_each_species, label_frames, teacher_kind, teacher_md_frames, teacher_record
from .training import TrainSettings, check_config, plan_training, stage_result
from .training.pipeline import config_split, package_versions
from .training.stages import distill_stage

REQUEST = "distill.json"
LABELS = "teacher_labels.extxyz"
LABELS_RECORD = "teacher_labels.json"
MD_TEMPERATURE_FACTORS = (1.0, 1.5)


@dataclass(frozen=True)
class TeacherMD:
    """Teacher MD from `structure`: `frames` frames in all, shared between the
    temperatures ``temperature_K × MD_TEMPERATURE_FACTORS``, one every `interval`
    steps of `timestep_fs`."""

    structure: str
    temperature_K: float = 300.0
    frames: int = 200
    timestep_fs: float = 0.5
    interval: int = 10


@dataclass
class Teacher:
    """A resolved teacher: its record (kind, spec, hash), its ASE calculator, and
    for an mtsmlip-model teacher the LoadedModel that is copied as baseline.pt."""

    record: dict
    calculator: object
    loaded: object = None


def resolve_teacher(spec: str, device: str = "cpu") -> Teacher:
    """The teacher `spec` names (see :mod:`mtsmlip.teacher`), built and ready to label."""
    kind = teacher_kind(spec)
    if kind != "mtsmlip-model":
        return Teacher(teacher_record(spec, kind), external_calculator(spec, device))
    model_file = resolve_model_dir(spec) / "baseline.pt"
    if not model_file.is_file():
        raise DataError(f"--teacher {spec}: this model directory has no baseline.pt (its conventional model is "
                        "the teacher); train one, or give its model file's directory")
    loaded = load_model(model_file)
    return Teacher(teacher_record(spec, kind, model_file), loaded.calculator(device), loaded)


def distill(teacher_spec: str, out_dir, cfg: dict, data_path=None, md: TeacherMD | None = None,
            resume: bool = False, progress: bool = True, device: str = "cpu", callbacks=()) -> dict:
    """Label, train the fast model, write the model directory (module doc).
    Returns the manifest."""
    out_dir = check_output_dir(out_dir)
    check_config(cfg, "training config")
    cfg = {**cfg, "baseline": False}  # the teacher is the baseline: nothing else is trained
    if data_path is None and md is None:
        raise DataError("distill needs configurations: --data FILE (relabelled) and/or --structure FILE (teacher MD)")
    if md is not None:
        check_md_frames(md, data_path is not None)
    teacher = resolve_teacher(teacher_spec, device)
    check_teacher_covers(teacher, data_path, md, cfg)  # before anything is written
    request = {"teacher": teacher.record, "config": cfg, "data": None if data_path is None else fingerprint(data_path),
               "teacher_md": None if md is None else {**dataclasses.asdict(md), "structure": fingerprint(md.structure)}}
    with output_lock(out_dir, "distill"):
        _prepare_out_dir(out_dir, request, resume)
        labels = labelled_frames(out_dir, teacher, request, data_path, md, cfg, progress)
        split = Split(**{part: labels["split"][part] for part in ("train", "val", "test")}, seed=int(cfg["seed"]))
        plan = {**plan_training(out_dir / LABELS, cfg, split), "n_stages": 1}
        result = stage_result(distill_stage(plan, cfg), plan, TrainSettings.from_config(cfg, plan), out_dir, resume, callbacks)
        models = {"fast": result["models"]["fast"]}
        if teacher.loaded is not None:
            models["baseline"] = teacher.loaded
        manifest = build_manifest(plan, cfg, teacher, labels, result, models)
        write_model_dir(out_dir, {k: (v.module, v.config) for k, v in models.items()}, manifest)
    return manifest


def check_teacher_covers(teacher: Teacher, data_path, md, cfg) -> None:
    """The teacher evaluates the first frame holding each species of --data and
    the --structure (a species it lacks, or NaN, is a named error), and the
    --data split fits, all before anything is written."""
    if data_path is not None:
        frames = frames_of(data_path)
        firsts = first_of_each_species(frames)
        label_frames(teacher.calculator, [frames[i] for i in firsts], f"{data_path}", progress=False,
                     names=[f"frame {i}" for i in firsts])
        config_split(len(frames), cfg)
    if md is not None:
        label_frames(teacher.calculator, [read_structure(md.structure)], md.structure, progress=False,
                     names=["the starting structure"])


def _prepare_out_dir(out_dir: Path, request: dict, resume: bool) -> None:
    """Refuse to overwrite a run; on resume, only the same teacher, config and data."""
    saved = out_dir / REQUEST
    if resume and saved.is_file():
        old = read_json(saved, "distill request")
        if old != _plain(request):
            changed = sorted(k for k in set(old) | set(request) if old.get(k) != _plain(request.get(k)))
            raise DataError(f"{saved}: --resume with a different {', '.join(changed)}; resume with the same "
                            "teacher, data and options, or use a new --out")
        return
    if run_files_in(out_dir):
        raise DataError(f"{out_dir}: output directory is not empty; use --resume to continue it or a new --out")
    atomic_write_json(saved, request)


def _plain(value):
    """`value` as JSON gives it back (tuples as lists): how it compares with a file."""
    return json.loads(json.dumps(value))


def labelled_frames(out_dir: Path, teacher: Teacher, request: dict, data_path, md, cfg, progress) -> dict:
    """The teacher-labelled frames in DIR/teacher_labels.extxyz (train, then
    validation, then test frames) and their record {split, source_split, n_md};
    made once (read back on resume)."""
    record_path = out_dir / LABELS_RECORD
    if record_path.is_file() and (out_dir / LABELS).is_file():
        record = read_json(record_path, "teacher label record")
        if record.get("request") == _plain(request):
            return record
    t0, parts, source_split = time.time(), {"train": [], "val": [], "test": []}, None
    if data_path is not None:
        frames = frames_of(data_path)
        source_split = config_split(len(frames), cfg)
        chosen = source_split.train + source_split.val
        labelled = label_frames(teacher.calculator, [frames[i] for i in chosen], str(data_path), progress,
                                names=[f"frame {i}" for i in chosen])
        parts["train"] += labelled[:len(source_split.train)]
        parts["val"] += labelled[len(source_split.train):]
    n_md = 0
    if md is not None:
        generated = generate_md_frames(teacher, md, int(cfg["seed"]), progress)
        n_md = len(generated)
        for k, atoms in enumerate(generated):  # every 10th to validation; held out too when there is no --data
            part = "val" if k % 10 == 0 else ("test" if k % 10 == 5 and data_path is None else "train")
            parts[part].append(atoms)
    frames = parts["train"] + parts["val"] + parts["test"]
    bounds = [0, len(parts["train"]), len(parts["train"]) + len(parts["val"]), len(frames)]
    split = {p: list(range(bounds[k], bounds[k + 1])) for k, p in enumerate(("train", "val", "test"))}
    print(f"mtsmlip distill: {len(frames)} teacher-labelled frames ({n_md} from teacher MD): "
          f"{len(split['train'])} train, {len(split['val'])} validation, {len(split['test'])} test", file=sys.stderr)
    _write_frames(out_dir / LABELS, frames)
    record = {"request": _plain(request), "split": split, "n_md_frames": n_md, "wall_time_s": time.time() - t0,
              "source_split": None if source_split is None else source_split.as_dict()}
    atomic_write_json(record_path, record)
    return record


def md_frame_counts(frames: int) -> list[int]:
    """`frames` teacher-MD frames shared out over the temperatures, exactly (the
    first temperatures take one more when they do not divide evenly)."""
    share, extra = divmod(int(frames), len(MD_TEMPERATURE_FACTORS))
    return [share + (k < extra) for k in range(len(MD_TEMPERATURE_FACTORS))]


def check_md_frames(md: "TeacherMD", has_data: bool) -> None:
    """DataError unless --frames gives every temperature a frame and leaves
    frames to train on (every 10th goes to validation, and without --data the
    5th of each ten to the test set)."""
    smallest = 2 if has_data else 3
    if md.frames < max(smallest, len(MD_TEMPERATURE_FACTORS)):
        raise DataError(f"--frames {md.frames}: teacher MD needs at least {max(smallest, len(MD_TEMPERATURE_FACTORS))} "
                        f"frames (one per temperature, {len(MD_TEMPERATURE_FACTORS)} temperatures, and some for "
                        "training beside validation" + ("" if has_data else " and test") + ")")


def generate_md_frames(teacher: Teacher, md: TeacherMD, seed: int, progress: bool) -> list:
    structure = read_structure(md.structure)
    temperatures = [md.temperature_K * f for f in MD_TEMPERATURE_FACTORS]
    return teacher_md_frames(teacher.calculator, structure, temperatures, md_frame_counts(md.frames), md.timestep_fs,
                             md.interval, seed, md.structure, progress)


def _write_frames(path: Path, frames) -> None:
    import ase.io

    atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))


def build_manifest(plan, cfg, teacher, labels, result, models) -> dict:
    """manifest.json of a distilled pair: the teacher record, and the data and
    split in the terms `eval --split` uses (the --data file's, if one was given)."""
    request = labels["request"]
    if request["data"] is not None:
        data = {**request["data"], "n_frames": len(frames_of(request["data"]["file"])), "type_names": plan["type_names"]}
        split = labels["source_split"]
    else:
        data = {**plan["data_fingerprint"], "n_frames": plan["n_frames"], "type_names": plan["type_names"]}
        split = plan["split"].as_dict()
    stage = {k: result[k] for k in ("wall_time_s", "final", "history", "parameters")}
    return {
        "format": "mtsmlip-model-dir-1", "kind": "distilled", "teacher": teacher.record,
        "versions": package_versions(), "data": data, "split": split, "teacher_labels": LABELS,
        "n_teacher_md_frames": labels["n_md_frames"], "teacher_md": request["teacher_md"], "config": cfg,
        "system": plan["system"], "batch_size": plan["batch_size"],
        "architectures": {n: m.config for n, m in models.items()}, "cutoffs_A": {n: m.r_max for n, m in models.items()},
        "parameters": {n: count_parameters(m.module) for n, m in models.items()},
        "stages": {"distill": stage}, "final_losses": {"distill": result["final"]},
        "wall_time_s": {"teacher_labels": labels["wall_time_s"], "distill": result["wall_time_s"]},
    }


def run(args) -> int:
    from . import training

    overrides = {"seed": args.seed, "train_frames": args.train_frames, "epochs": args.epochs,
                 "max_minutes": args.max_minutes, "stability_md_fs": args.check_fs}
    cfg = training.load_config(args.config, **overrides)
    md = None
    if args.structure is not None:
        md = TeacherMD(args.structure, args.temperature_K, args.frames, args.md_timestep_fs, args.md_interval)
    from .stability import check_stability

    manifest = distill(args.teacher, args.out, cfg, args.data, md, resume=args.resume,
                       progress=not args.no_progress, device=args.device)
    external = manifest["teacher"]["kind"] != "mtsmlip-model"
    stability = check_stability(args.out, Path(args.out) / LABELS, cfg, teacher=args.teacher if external else None,
                                say=lambda line: print(f"mtsmlip distill: {line}", file=sys.stderr, flush=True))
    print(json.dumps({"out": str(args.out), "teacher": manifest["teacher"], "final": manifest["final_losses"],
                      "wall_time_s": manifest["wall_time_s"],
                      "stability": None if stability is None else
                      {k: stability[k] for k in ("pair_stable", "baseline_stable", "recommended_n_inner")}},
                     indent=2), file=sys.stdout)
    return 0

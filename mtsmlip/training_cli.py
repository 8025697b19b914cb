"""Train a fast and a slow potential together (plus a conventional baseline)."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="reference frames with energies and forces (any ase.io.read format)")
    parser.add_argument("--config", default=None, help="YAML merged into the default config (mtsmlip/configs/train_default.yaml)")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--seed", type=int, default=None, help="overrides `seed`")
    parser.add_argument("--train-frames", type=int, default=None, help="overrides `train_frames`")
    parser.add_argument("--epochs", type=int, default=None, help="overrides `epochs` (each stage)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the conventional baseline")


def run(args) -> int:
    from . import training

    overrides = {"seed": args.seed, "train_frames": args.train_frames, "epochs": args.epochs,
                 "baseline": False if args.no_baseline else None}
    cfg = training.resume_config(args.out, args.config, **overrides) if args.resume else None
    if cfg is None:
        cfg = training.load_config(args.config, **overrides)
    manifest = training.train(args.data, args.out, cfg, resume=args.resume)
    print(json.dumps({"out": str(args.out), "final": manifest["final_losses"],
                      "wall_time_s": manifest["wall_time_s"]}, indent=2))
    return 0

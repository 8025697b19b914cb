"""Train a fast and a slow potential together (plus a conventional baseline)."""

from __future__ import annotations

import json
import sys


def run(args) -> int:
    from . import training
    from .stability import check_stability

    overrides = {"seed": args.seed, "train_frames": args.train_frames, "epochs": args.epochs,
                 "max_minutes": args.max_minutes, "baseline": False if args.no_baseline else None,
                 "slow_architecture": args.slow_architecture, "stability_md_fs": args.check_fs}
    cfg = training.resume_config(args.out, args.config, **overrides) if args.resume else None
    if cfg is None:
        cfg = training.load_config(args.config, **overrides)
    manifest = training.train(args.data, args.out, cfg, resume=args.resume, reuse_from=args.reuse_stages_from)
    stability = check_stability(args.out, args.data, cfg, say=lambda line: print(f"mtsmlip train: {line}",
                                                                                   file=sys.stderr, flush=True))
    print(json.dumps({"out": str(args.out), "final": manifest["final_losses"], "wall_time_s": manifest["wall_time_s"],
                      "stability": None if stability is None else
                      {k: stability[k] for k in ("pair_stable", "baseline_stable", "recommended_n_inner")}},
                     indent=2))
    return 0

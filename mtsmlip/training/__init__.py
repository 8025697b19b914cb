"""Co-training of a fast and a slow potential, and the conventional baseline.

A run is three stages, each a :class:`Stage` value (models, loss weights,
init-from, frozen, learning-rate factors, epochs) fitted by one function,
:func:`run_stage`: a Lightning ``Trainer.fit`` of nequip's ``EMALightningModule``
(through the small subclass :class:`MultiScaleModule`, whose output is the sum
of its models) on a ``NequIPDataModule``:

1. :func:`stage1`: the fast model alone on the reference energies and forces;
2. :func:`stage2`: fast (initialised from stage 1) + slow, so that their *sum* fits;
3. :func:`baseline`: the slow architecture alone, trained like stage 1.

The loss is defined in one place, :mod:`.loss` (:func:`loss_metrics`)::

    L = a·MSE((E_f+E_s)/N, E_ref/N) + b·MSE(F_f+F_s, F_ref) + λ·MSE(F_f, F_ref)
        + μ·E_v ‖(∂F_s/∂x)·v‖²          (v: Maxwell–Boltzmann velocities, Å/fs)

Modules: ``config`` (load, merge, check; :class:`TrainSettings`), ``data``
(datasets, data module, sampler), ``statistics`` (energy shifts, neighbour
counts, energy-offset balance), ``loss``, ``module`` (the Lightning module,
model dict, optimiser groups), ``callbacks`` (λ schedule, epoch report),
``stages`` (Stage values and the runner), ``pipeline`` (:func:`train`: plan,
output folder, resume, manifest). Everything is re-exported here, and the
``_target_`` paths that checkpoints hold (``mtsmlip.training.FramesDataset``,
``.EpochShuffleSampler``, ``.ZeroTargetMSE``, ``.build_model_dict``,
``.param_groups``) resolve through this package.
"""

from ..data import frames_of
from .callbacks import EpochReport, LambdaSchedule
from .config import CONFIG_FILE, CONFIG_NUMBERS, DEFAULT_CONFIG, TrainSettings, check_config, load_config, resume_config
from .data import EpochShuffleSampler, FramesDataset, check_frames_fit, data_module
from .loss import (
    FAST_FORCE_TERM,
    FAST_FORCES,
    SLOW_FORCE_JVP,
    SLOW_FORCES,
    LossWeights,
    ZeroTargetMSE,
    loss_metrics,
    maxwell_boltzmann_velocities_A_per_fs,
    sum_of_models,
    validation_metrics,
)
from .module import MultiScaleModule, build_model_dict, param_groups
from .pipeline import (
    DATA_RECORD,
    build_manifest,
    package_versions,
    plan_training,
    read_stage_result,
    stage_result,
    train,
    written_models,
)
from .stages import (
    Stage,
    baseline,
    check_stage_sound,
    checkpoint_dir,
    done_dir,
    module_kwargs,
    resumable_checkpoint,
    run_stage,
    stage1,
    stage2,
    stage_identity,
)
from .statistics import (
    SHIFTS_KEY,
    avg_num_neighbors,
    balance_energy_offsets,
    fitted_model_config,
    force_rms_eV_per_A,
    per_type_energy_shifts_eV,
    per_type_least_squares,
    reference_minus_model,
    residual_force_rms_eV_per_A,
)

__all__ = [
    "CONFIG_FILE", "CONFIG_NUMBERS", "DATA_RECORD", "DEFAULT_CONFIG", "FAST_FORCES", "FAST_FORCE_TERM", "SHIFTS_KEY",
    "SLOW_FORCES", "SLOW_FORCE_JVP", "EpochReport", "EpochShuffleSampler", "FramesDataset", "LambdaSchedule",
    "LossWeights", "MultiScaleModule", "Stage", "TrainSettings", "ZeroTargetMSE", "avg_num_neighbors",
    "balance_energy_offsets", "baseline", "build_manifest", "build_model_dict", "check_config", "check_frames_fit",
    "check_stage_sound", "checkpoint_dir", "data_module", "done_dir", "fitted_model_config",
    "force_rms_eV_per_A", "frames_of", "load_config", "loss_metrics", "maxwell_boltzmann_velocities_A_per_fs",
    "module_kwargs", "package_versions", "param_groups", "per_type_energy_shifts_eV", "per_type_least_squares",
    "plan_training", "read_stage_result", "reference_minus_model", "residual_force_rms_eV_per_A", "resumable_checkpoint",
    "resume_config", "run_stage", "stage1", "stage2", "stage_identity", "stage_result", "sum_of_models", "train", "validation_metrics",
    "written_models",
]

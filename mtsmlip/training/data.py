"""The frames a stage trains on, as nequip datasets in a ``NequIPDataModule``
whose training order depends only on (seed, epoch)."""

from __future__ import annotations

import torch
from nequip.data.ase import from_ase
from nequip.data.dataset import AtomicDataset

from .. import data as data_mod
from ..data import frames_of


class FramesDataset(AtomicDataset):
    """nequip dataset of the frames `indices` of `file_path`, held in memory."""

    def __init__(self, file_path: str, indices: list, transforms=()):
        super().__init__(transforms=list(transforms))
        frames = frames_of(file_path)
        self.data_list = [from_ase(frames[i]) for i in indices]

    def __len__(self) -> int:
        return len(self.data_list)

    def _get_data_list(self, indices):
        if isinstance(indices, slice):
            return self.data_list[indices]
        return [self.data_list[i] for i in indices]


def _dataset_config(file_path, indices, type_names, r_max_A) -> dict:
    return {
        # the package's path (checkpoints hold it), not this module's
        "_target_": "mtsmlip.training.FramesDataset",
        "file_path": str(file_path),
        "indices": list(indices),
        "transforms": [
            {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": list(type_names)},
            {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": float(r_max_A)},
        ],
    }


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Random order of `n` frames that is a pure function of (seed, epoch), like
    DistributedSampler: Lightning calls ``set_epoch`` before every epoch, so a run
    resumed from an end-of-epoch checkpoint draws exactly the order an
    uninterrupted run draws, whatever generator state the loaders carry."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def data_module(file_path, split, type_names, r_max_A: float, batch_size: int, seed: int):
    """A ``NequIPDataModule`` over the split (neighbour lists at `r_max_A`); the
    training order depends only on (seed, epoch)."""
    from nequip.data.datamodule import NequIPDataModule

    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": int(batch_size)}
    return NequIPDataModule(
        seed=int(seed),
        train_dataset=_dataset_config(file_path, split.train, type_names, r_max_A),
        val_dataset=_dataset_config(file_path, split.val, type_names, r_max_A),
        train_dataloader={**loader, "sampler": {"_target_": "mtsmlip.training.EpochShuffleSampler",
                                                 "n": len(split.train), "seed": int(seed)}},
        val_dataloader=loader,
    )


def check_frames_fit(frames, path) -> None:
    """Every periodic frame must have a cell (any width: see :func:`mtsmlip.data.check_periodic_cell`)."""
    for i, atoms in enumerate(frames):
        data_mod.check_periodic_cell(atoms, f"{path}, frame {i}")

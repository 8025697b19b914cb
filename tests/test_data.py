"""Bad input to data.py is named by file, frame and field; splits are fixed by seed."""

import gzip

import numpy as np
import pytest

from mtsmlip.data import (
    DataError,
    check_periodic_cell,
    check_species_known,
    make_split,
    read_frames,
    species_of,
)
from tests.training_helpers import labelled_frames, write_frames


def test_reads_energies_and_forces(tmp_path):
    frames = labelled_frames(3)
    got = read_frames(write_frames(tmp_path / "f.extxyz", frames))
    assert len(got) == 3 and got[0].calc is None
    assert got[2].info["energy"] == pytest.approx(frames[2].get_potential_energy())
    np.testing.assert_allclose(got[2].arrays["forces"], frames[2].get_forces())


def test_gzipped_file_reads_the_same(tmp_path):
    plain = write_frames(tmp_path / "f.extxyz", labelled_frames(3))
    with gzip.open(tmp_path / "f.extxyz.gz", "wt") as f:
        f.write(plain.read_text())
    a, b = read_frames(plain), read_frames(tmp_path / "f.extxyz.gz")
    assert [x.info["energy"] for x in a] == [x.info["energy"] for x in b]
    assert read_frames(tmp_path / "f.extxyz.gz", index="1")[0].info["energy"] == a[1].info["energy"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.xyz: file not found"):
        read_frames(tmp_path / "nope.xyz")


def test_empty_file(tmp_path):
    (tmp_path / "e.extxyz").write_text("")
    with pytest.raises(DataError, match="e.extxyz: file is empty"):
        read_frames(tmp_path / "e.extxyz")


@pytest.mark.parametrize("field", ["energy", "forces"])
def test_missing_label_names_frame_and_field(tmp_path, field):
    frames = labelled_frames(3)
    results = dict(frames[1].calc.results)
    del results[field]
    frames[1].calc.results = results
    with pytest.raises(DataError, match=f"f.extxyz, frame 1, field '{field}': missing"):
        read_frames(write_frames(tmp_path / "f.extxyz", frames))


def test_nan_energy(tmp_path):
    frames = labelled_frames(2)
    frames[1].calc.results["energy"] = float("nan")
    with pytest.raises(DataError, match="frame 1, field 'energy': is nan"):
        read_frames(write_frames(tmp_path / "f.extxyz", frames))


def test_nan_forces_name_the_atom(tmp_path):
    frames = labelled_frames(2)
    frames[0].calc.results["forces"][5, 2] = np.inf
    with pytest.raises(DataError, match="frame 0, field 'forces': NaN or inf at atom 5"):
        read_frames(write_frames(tmp_path / "f.extxyz", frames))


def test_mixed_periodicity(tmp_path):
    frames = labelled_frames(1, vacuum=True) + labelled_frames(1)
    with pytest.raises(DataError, match="frame 1, field 'pbc'.*mixed"):
        read_frames(write_frames(tmp_path / "f.extxyz", frames))


def test_a_periodic_frame_needs_a_cell_of_any_width():
    atoms = labelled_frames(1)[0]
    atoms.cell = np.eye(3) * 1.5  # narrower than any cutoff: fine
    check_periodic_cell(atoms, "x")
    atoms.cell = np.zeros((3, 3))
    with pytest.raises(DataError, match="x, field 'cell': periodic frame without a cell"):
        check_periodic_cell(atoms, "x")


def test_non_periodic_frames_need_no_cell():
    check_periodic_cell(labelled_frames(1, vacuum=True)[0], "x")


def test_unknown_species():
    atoms = labelled_frames(1)[0]
    assert species_of([atoms]) == ["H", "O"]
    atoms.numbers[0] = 6
    with pytest.raises(DataError, match=r"\['C'\] unknown to the model"):
        check_species_known(atoms, ["H", "O"], "here")


def test_split_is_fixed_by_seed_and_disjoint():
    a, b, c = make_split(50, 20, 5, seed=3), make_split(50, 20, 5, seed=3), make_split(50, 20, 5, seed=4)
    assert a == b and a.train != c.train
    assert sorted(a.train + a.val + a.test) == list(range(50))
    assert len(make_split(50, 20, 5, seed=3, n_test=7).test) == 7


def test_split_larger_than_data():
    with pytest.raises(DataError, match="the data has 10"):
        make_split(10, 8, 4, seed=0)


def test_last_frames_held_out_as_test_set():
    from mtsmlip.data import make_split

    split = make_split(100, 60, 10, seed=3, n_test=20, test_split="last")
    assert split.test == list(range(80, 100))
    assert not set(split.train) & set(split.val)
    assert max(split.train + split.val) < 80
    assert make_split(100, 60, 10, 3, 20, "last") == split
    with pytest.raises(DataError, match="once the last 20 are held out"):
        make_split(100, 75, 10, 3, 20, "last")
    with pytest.raises(DataError, match="test_split must be"):
        make_split(100, 60, 10, 3, 20, "first")

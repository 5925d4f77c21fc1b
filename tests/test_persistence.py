"""The one .npz model format: round trip of every entry type, and the error policy
(FileNotFoundError for a missing file; ValueError naming the file for anything else)."""

import numpy as np
import pytest

from lvmref.persistence import read_model, save_model


def _entries():
    return {"n_components": 3, "tol": 1e-3, "covariance_type": "full", "warm_start": False,
            "means_": np.arange(6.0).reshape(3, 2), "sizes": np.array([1, 8, 16]),
            "mean_prior": None}


def test_round_trip_of_every_entry_type(tmp_path):
    path = save_model(tmp_path / "m", "Thing", 2, _entries())
    assert path == tmp_path / "m.npz" and path.is_file()
    f = read_model(path, "Thing", versions=(1, 2))
    assert f.version == 2 and f.kind == "Thing"
    assert f.int("n_components") == 3 and f.float("tol") == 1e-3
    assert f.str("covariance_type") == "full" and f.bool("warm_start") is False
    np.testing.assert_array_equal(f.array("means_"), np.arange(6.0).reshape(3, 2))
    assert f.int_tuple("sizes") == (1, 8, 16)
    assert f.is_none("mean_prior") and f.array("mean_prior", optional=True) is None
    assert "mean_prior" in f and "other" not in f
    assert sorted(f.keys()) == sorted(k for k, v in _entries().items() if v is not None)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_model(tmp_path / "nope.npz", "Thing")
    with pytest.raises(ValueError, match="is a directory"):
        read_model(tmp_path, "Thing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_model(tmp_path / "no" / "dir" / "m.npz", "Thing", 1, {})


def _written(tmp_path):
    return save_model(tmp_path / "good.npz", "Thing", 1, _entries())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p, good: p.write_bytes(b""), "the file is empty"),
        (lambda p, good: p.write_text("1,2,3\n4,5,6\n"), r"not an \.npz \(zip\) archive"),
        (lambda p, good: np.save(p.with_suffix(".tmp.npy"), np.zeros(3))
         or p.write_bytes(p.with_suffix(".tmp.npy").read_bytes()), r"not an \.npz"),
        (lambda p, good: p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]),
         "truncated or corrupted"),
        (lambda p, good: p.write_bytes(_flip_middle(good.read_bytes())),
         "truncated or corrupted|corrupted"),
    ],
    ids=["empty", "text", "npy", "truncated", "corrupted"],
)
def test_unreadable_files_are_value_errors_naming_the_file(tmp_path, make, match):
    good = _written(tmp_path)
    p = tmp_path / "bad.npz"
    make(p, good)
    with pytest.raises(ValueError, match=match) as info:
        read_model(p, "Thing")
    assert str(p) in str(info.value)
    assert "allow_pickle" not in str(info.value)  # never suggest unsafe loading


def _flip_middle(data: bytes) -> bytes:
    b = bytearray(data)
    for i in range(len(b) // 3, len(b) // 3 + 64):
        b[i] ^= 0xFF
    return bytes(b)


def test_pickled_payload_is_refused(tmp_path):
    p = tmp_path / "pickled.npz"
    np.savez(p, __kind__=np.array("Thing"), __format__=np.array(1),
             evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled") as info:
        read_model(p, "Thing")
    assert str(p) in str(info.value) and "allow_pickle" not in str(info.value)


def test_kind_version_and_entry_errors(tmp_path):
    path = _written(tmp_path)
    with pytest.raises(ValueError, match="holds a Thing, not a VAE"):
        read_model(path, "VAE")
    with pytest.raises(ValueError, match="format version 1 is not supported"):
        read_model(path, "Thing", versions=(2,))
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(2))
    with pytest.raises(ValueError, match="not an lvmref model file"):
        read_model(plain, "Thing")
    f = read_model(path, "Thing")
    with pytest.raises(ValueError, match="tol must be an integer"):
        f.int("tol")
    with pytest.raises(ValueError, match="covariance_type must be numeric"):
        f.array("covariance_type")
    with pytest.raises(ValueError, match="means_ must be a single value"):
        f.float("means_")
    with pytest.raises(ValueError, match="absent is missing") as info:
        f.array("absent")
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="mean_prior is missing"):
        f.array("mean_prior")
    with pytest.raises(ValueError, match="n_components must be True or False"):
        f.bool("n_components")

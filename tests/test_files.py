"""CLI data loading: happy paths and the errors a user sees."""

import numpy as np
import pytest

from lvmref.files import load_matrix


def test_npy_and_csv_roundtrip(tmp_path):
    X = np.arange(12.0).reshape(4, 3) / 7
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    np.testing.assert_array_equal(load_matrix(tmp_path / "x.npy"), X)
    np.testing.assert_allclose(load_matrix(tmp_path / "x.csv"), X, rtol=1e-15)


def test_bool_npy_is_binary(tmp_path):
    np.save(tmp_path / "b.npy", np.array([[True, False], [False, False]]))
    out = load_matrix(tmp_path / "b.npy", binary=True)
    assert out.dtype == np.float64 and out.tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ("1;2;3\n4;5;6\n", ".csv", r"line 1, column 1: '1;2;3' is not a number.*delimiter"),
        ("a,b\n1,2\n", ".csv", r"line 1, column 1: 'a' is not a number \(a header line"),
        ("# c\n1,2\n\n3,x\n", ".csv", r"line 4, column 2: 'x' is not a number"),
        ("1,2\n3,4,5\n", ".csv", "line 2 has 3 columns but line 1 has 2"),
        ("", ".csv", "is empty"),
        ("# only a comment\n", ".csv", "is empty"),
        ("1,2\n", ".json", "must end in .npy or .csv"),
    ],
)
def test_bad_text_files(tmp_path, content, suffix, match):
    p = tmp_path / f"d{suffix}"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_matrix(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA file not found"):
        load_matrix(tmp_path / "nope.npy")


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros(3), "2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "numbers"),
    ],
)
def test_bad_arrays(tmp_path, arr, match):
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(ValueError, match=match):
        load_matrix(tmp_path / "a.npy")


def test_non_binary_rejected(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="binary"):
        load_matrix(tmp_path / "a.npy", binary=True)


def test_pickled_object_array_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="holds pickled") as info:
        load_matrix(tmp_path / "o.npy")
    assert "allow_pickle" not in str(info.value)


def test_complex_refused_and_bad_entries_located(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((2, 2)) + 1j)
    with pytest.raises(ValueError, match="holds complex numbers"):
        load_matrix(tmp_path / "c.npy")
    X = np.zeros((3, 2))
    X[2, 1] = np.nan
    np.save(tmp_path / "n.npy", X)
    with pytest.raises(ValueError, match=r"first at entry \[2, 1\]"):
        load_matrix(tmp_path / "n.npy")
    (tmp_path / "n.csv").write_text("# header comment\n0,1\n\n1,nan\n")
    with pytest.raises(ValueError, match="first at line 4, column 2"):
        load_matrix(tmp_path / "n.csv")
    (tmp_path / "b.csv").write_text("0,1\n1,0.5\n")
    with pytest.raises(ValueError, match="line 2, column 2 is 0.5"):
        load_matrix(tmp_path / "b.csv", binary=True)


def test_empty_csv_gives_no_numpy_warning(tmp_path, recwarn):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_matrix(tmp_path / "e.csv")
    assert len(recwarn) == 0


def test_mmap_returns_the_file_mapped_and_validates_it_by_chunks(tmp_path, monkeypatch):
    from lvmref import files

    monkeypatch.setattr(files, "MMAP_CHUNK_ROWS", 4)  # several chunks on small data
    X = (np.arange(40.0).reshape(20, 2) % 3 == 0).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    out = load_matrix(tmp_path / "x.npy", binary=True, mmap=True)
    assert isinstance(out, np.memmap) and out.dtype == np.float32 and not out.flags.writeable
    np.testing.assert_array_equal(out, X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    csv = load_matrix(tmp_path / "x.csv", mmap=True)  # text is read whole
    assert type(csv) is np.ndarray and csv.dtype == np.float64
    bad = X.astype(float)
    bad[13, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first at entry \[13, 1\]\)"):
        load_matrix(tmp_path / "nan.npy", mmap=True)
    grey = X.astype(float)
    grey[17, 0] = 0.5
    np.save(tmp_path / "grey.npy", grey)
    with pytest.raises(ValueError, match=r"must be binary .* entry \[17, 0\] is 0.5"):
        load_matrix(tmp_path / "grey.npy", binary=True, mmap=True)
    np.save(tmp_path / "obj.npy", np.array([[{}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="holds pickled .* data, which lvmref never loads"):
        load_matrix(tmp_path / "obj.npy", mmap=True)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="is empty"):
        load_matrix(tmp_path / "empty.npy", mmap=True)
    with pytest.raises(TypeError, match="mmap must be True or False"):
        load_matrix(tmp_path / "x.npy", mmap="yes")

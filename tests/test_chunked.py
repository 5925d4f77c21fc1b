"""lvmref.chunked: reading rows chunk by chunk (memory maps, array-likes, Dask arrays).

Oracles: the arrays themselves (every chunk must be exactly the rows it stands for), a
recording array-like that sees every read (no read larger than a chunk, nothing loaded
whole), and fresh interpreters for the optional Dask dependency.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import sparse

from lvmref import chunked
from lvmref.chunked import (
    CHUNK_BYTES,
    RowChunks,
    check_chunk_size,
    check_rows,
    default_chunk_size,
    is_dask_array,
    is_in_memory,
    require_dask,
    row_source,
)


class Rows:
    """A minimal array-like (as h5py/zarr arrays are): shape, dtype, row slicing. It
    records every read and refuses to be converted whole."""

    def __init__(self, a, max_rows=None):
        self.a = np.asarray(a)
        self.shape, self.dtype, self.max_rows = self.a.shape, self.a.dtype, max_rows
        self.reads = []

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"Rows supports row slices only, got {key!r}")
        start, stop, _ = key.indices(self.shape[0])
        if self.max_rows is not None and stop - start > self.max_rows:
            raise AssertionError(f"read {stop - start} rows at once")
        self.reads.append((start, stop))
        return self.a[key].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was requested")


def memmap(tmp_path, a, name="x.npy"):
    np.save(tmp_path / name, a)
    return np.load(tmp_path / name, mmap_mode="r")


def test_what_counts_as_in_memory(tmp_path):
    a = np.arange(6.0).reshape(3, 2)
    assert is_in_memory(a) and is_in_memory(a.tolist()) and is_in_memory(sparse.csr_matrix(a))
    assert is_in_memory(np.arange(3.0)) and is_in_memory("abc")
    assert not is_in_memory(memmap(tmp_path, a))
    assert not is_in_memory(Rows(a))
    assert is_in_memory(Rows(np.arange(3.0)))  # not 2-D: the in-memory checks report it
    fake = type("Array", (), {"__module__": "dask.array.core", "shape": (3, 2),
                              "dtype": np.dtype(float), "__getitem__": lambda s, k: None})()
    assert is_dask_array(fake) and not is_in_memory(fake)
    assert not is_dask_array(a)


def test_default_chunk_size_is_the_memory_budget():
    for d, k in ((10, 16), (3, 1), (1000, 50)):
        rows = default_chunk_size(d, k)
        assert rows % 1024 == 0 and rows >= 1024
        assert rows * 8 * (d + 2 * k + 2) <= max(CHUNK_BYTES, 1024 * 8 * (d + 2 * k + 2))
        assert (rows + 1024) * 8 * (d + 2 * k + 2) > CHUNK_BYTES or rows == 1024
    assert default_chunk_size(10, 16) == 64 * 2**20 // (8 * 44) // 1024 * 1024


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                      (True, TypeError), ("10", TypeError)])
def test_chunk_size_must_be_a_positive_int(bad, err):
    with pytest.raises(err, match="chunk_size"):
        check_chunk_size(bad)
    assert check_chunk_size(None) is None and check_chunk_size(np.int64(7)) == 7


def test_check_rows_converts_only_when_needed():
    a = np.arange(12.0).reshape(4, 3)
    out = check_rows(a, 0)
    assert out is a  # float64 C-contiguous: used in place
    for b in (a.astype(np.float32), np.asfortranarray(a), a.astype(int), a > 3):
        got = check_rows(b, 0)
        assert got.dtype == np.float64 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, np.asarray(b, dtype=float))
    bad = a.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first in row 102"):
        check_rows(bad, 100)
    with pytest.raises(ValueError, match=r"resp rows from 5 must be of shape \(\*, 2\)"):
        check_rows(a, 5, "resp", 2)
    with pytest.raises(TypeError, match="X must be a numeric array"):
        check_rows(np.array([["a"]]), 0)
    with pytest.raises(ValueError, match="Complex data not supported"):
        check_rows(a + 1j, 0)


@pytest.mark.parametrize("source", ["ndarray", "memmap", "rows", "fortran"])
def test_chunks_are_exactly_the_rows(tmp_path, source):
    a = np.random.default_rng(0).normal(size=(1000, 3))
    X = {"ndarray": lambda: a, "memmap": lambda: memmap(tmp_path, a),
         "rows": lambda: Rows(a, max_rows=128),
         "fortran": lambda: memmap(tmp_path, np.asfortranarray(a))}[source]()
    src = row_source(X, 128)
    assert src.shape == (1000, 3) and src.chunk_size == 128
    assert src.bounds() == [(i, min(i + 128, 1000)) for i in range(0, 1000, 128)]
    w = np.arange(1000.0)
    r = np.random.default_rng(1).random((1000, 2))
    seen = src.map_reduce(lambda s, x, wc, rc: [(s, x.copy(), wc, rc)], lambda p, q: p + q,
                          weight=w, resp=r)
    assert [s for s, *_ in seen] == list(range(0, 1000, 128))
    np.testing.assert_array_equal(np.vstack([x for _, x, _, _ in seen]), a)
    np.testing.assert_array_equal(np.concatenate([wc for _, _, wc, _ in seen]), w)
    np.testing.assert_array_equal(np.vstack([rc for *_, rc in seen]), r)
    np.testing.assert_array_equal(src.map_rows(lambda x, s: x[:, 0] + s), a[:, 0] + np.repeat(
        np.arange(0, 1000, 128), 128)[:1000])
    np.testing.assert_array_equal(src.map_rows(lambda x, s: x[:, :2], 2), a[:, :2])
    rows = np.array([0, 5, 127, 128, 600, 999])
    np.testing.assert_array_equal(src.take(rows), a[rows])
    assert src.take(np.array([], dtype=int)).shape == (0, 3)


def test_in_memory_default_is_one_chunk_and_maps_get_the_memory_budget(tmp_path):
    a = np.zeros((5000, 4))
    assert RowChunks(a).chunk_size == 5000
    assert RowChunks(memmap(tmp_path, a), n_components=3).chunk_size == default_chunk_size(4, 3)
    assert RowChunks(Rows(a)).chunk_size == default_chunk_size(4)
    assert RowChunks(a, 7).chunk_size == 7
    src = row_source([[1, 2], [3, 4]], 1)
    np.testing.assert_array_equal(src.read(1, 2), [[3.0, 4.0]])


def test_a_bad_value_is_reported_with_its_global_row(tmp_path):
    a = np.zeros((300, 2))
    a[257, 1] = np.nan
    src = row_source(memmap(tmp_path, a), 100, name="X")
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first in row 257"):
        src.map_reduce(lambda s, x, w, r: 0, max)
    r = np.ones((300, 2))
    r[123, 0] = np.inf
    src = row_source(np.zeros((300, 2)), 100)
    with pytest.raises(ValueError, match=r"resp_init contains NaN .* row 123"):
        src.map_reduce(lambda s, x, w, rc: 0, max, resp=r)


@pytest.mark.parametrize("a, err, match", [
    (np.zeros(5), ValueError, r"X must be 2-D \(rows are samples\), got shape \(5,\)"),
    (np.zeros((2, 2, 2)), ValueError, "X must be 2-D"),
    (np.zeros((0, 3)), ValueError, r"X has 0 sample\(s\)"),
    (np.zeros((3, 0)), ValueError, r"X has 0 feature\(s\)"),
    (np.zeros((2, 2), complex), ValueError, "Complex data not supported"),
    (np.array([["a", "b"]]), TypeError, "X must be a numeric array"),
])
def test_bad_arrays_are_refused_with_check_x_messages(tmp_path, a, err, match):
    with pytest.raises(err, match=match):
        RowChunks(memmap(tmp_path, a) if a.size else a)


def test_features_of_a_fitted_model_are_checked():
    with pytest.raises(ValueError, match="X has 3 features, but the model is expecting 2"):
        row_source(np.zeros((4, 3)), n_features=2)


def test_without_dask_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"pip install 'lvmref\[dask\]'"):
        require_dask()
    fake = type("Array", (), {"__module__": "dask.array.core", "shape": (3, 2),
                              "dtype": np.dtype(float), "__getitem__": lambda s, k: None})()
    with pytest.raises(ImportError, match=r"X is a Dask array.*lvmref\[dask\]"):
        row_source(fake)
    from lvmref.gmm import GaussianMixture

    with pytest.raises(ImportError, match=r"lvmref\[dask\]"):
        GaussianMixture(1).fit(fake)


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_lvmref_never_imports_dask_and_works_without_it(tmp_path):
    """In fresh interpreters: importing the mixtures imports no Dask, and with Dask made
    unimportable a memory-mapped fit runs."""
    out = _run("""
        import sys
        import lvmref.gmm, lvmref.vbgmm, lvmref.chunked, lvmref.cli
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 2)))
    out = _run(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('dask', 'distributed'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from lvmref.gmm import GaussianMixture
        X = np.load({str(tmp_path / 'x.npy')!r}, mmap_mode='r')
        g = GaussianMixture(2, random_state=0).fit(X)
        print(g.converged_, g.predict(X).shape)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "(50,)"]


def test_dask_rows_match_the_sequential_chunks():
    import dask.array as da
    a = np.random.default_rng(2).normal(size=(1000, 3))
    X = da.from_array(a, chunks=(90, 2))  # columns split too: joined into one block
    src = row_source(X)
    assert isinstance(src, chunked.DaskRows) and src.shape == (1000, 3)
    assert len(src.X.chunks[1]) == 1 and src.X.chunks[0] == X.chunks[0]
    src.SPLIT_EVERY = 3  # a tree of several levels
    w = np.arange(1000.0)
    total = src.map_reduce(lambda s, x, wc, r: np.array([x.sum(), wc @ x[:, 0], x.shape[0]]),
                           lambda p, q: p + q, weight=w)
    np.testing.assert_allclose(total, [a.sum(), w @ a[:, 0], 1000], rtol=1e-13)
    starts = src.map_reduce(lambda s, x, wc, r: [s], lambda p, q: p + q)
    assert sorted(starts) == list(range(0, 1000, 90))
    lazy = src.map_rows(lambda x, s: x[:, 1] * 2)
    assert is_dask_array(lazy)
    np.testing.assert_array_equal(lazy.compute(), a[:, 1] * 2)
    np.testing.assert_array_equal(src.map_rows(lambda x, s: x[:, :2], 2).compute(), a[:, :2])
    np.testing.assert_array_equal(src.take([3, 500, 999]), a[[3, 500, 999]])
    assert row_source(X, 250).X.chunks[0] == (250, 250, 250, 250)
    bad = a.copy()
    bad[731, 0] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN or infinite values \(first in row 731"):
        row_source(da.from_array(bad, chunks=100)).map_reduce(lambda s, x, w, r: 0, max)
    unknown = da.from_array(a, chunks=100)[da.from_array(a[:, 0] > 0, chunks=100)]
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes"):
        row_source(unknown)

"""A student opens data files of every format; bad files and path tricks give readable messages."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest

from panel_apps.dataset import DataSource
from panel_apps.ingest import cache_path, ensure_cache
from panel_apps.loaders import LoadError, TextOptions, preview, read_columns, sniff_text
from panel_apps.paths import AllowedRoots, PathRefused
from panel_apps.sample_data import main as sample_data_main
from panel_apps.spec import PlotSpec


@pytest.fixture
def table():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"t": np.arange(200) * 1e-3, "charge": rng.normal(size=200) * 1e-7,
                         "n": np.arange(200, dtype=np.int64)})


# ----------------------------------------------------------------- text formats, sniffed
def test_whitespace_text_with_comment_header_and_scientific_notation(tmp_path):
    path = tmp_path / "run.dat"
    path.write_text("# measured 2026-11-01\n# t q1 q2\n  1.0e-03  -2.5E-07 3\n  2.0e-03   4.0e+02 4\n")
    p = preview(path)
    assert p.format == "text"
    assert list(p.frame.columns) == ["t", "q1", "q2"]
    assert p.frame["q1"].tolist() == [-2.5e-07, 400.0]
    assert p.options["delimiter"] is None and p.options["comment"] == "#"


def test_csv_with_header_row(tmp_path, table):
    path = tmp_path / "data.csv"
    table.to_csv(path, index=False)
    p = preview(path)
    assert list(p.frame.columns) == ["t", "charge", "n"]
    assert p.options["delimiter"] == "," and p.options["header"] is True


def test_tsv_without_header_gets_numbered_columns(tmp_path, table):
    path = tmp_path / "data.tsv"
    table.to_csv(path, sep="\t", index=False, header=False)
    p = preview(path)
    assert list(p.frame.columns) == ["col1", "col2", "col3"]
    assert p.options["delimiter"] == "\t"


def test_sniffing_can_be_overridden(tmp_path):
    path = tmp_path / "semi.txt"
    path.write_text("a;b\n1;2\n3;4\n")
    forced = preview(path, {"delimiter": ";", "header": False, "names": ["x", "y"], "comment": None})
    assert list(forced.frame.columns) == ["x", "y"] and len(forced.frame) == 3  # header row read as data


def test_text_is_converted_once_to_the_columnar_cache_with_progress(tmp_path):
    path = tmp_path / "josephson.txt"
    assert sample_data_main(["--out", str(path), "--rows", "2500"]) == 0
    opts = sniff_text(path)
    seen = []
    cache = ensure_cache(path, opts, None, tmp_path / "cache", lambda f, r: seen.append((f, r)), chunk_rows=1000)
    assert cache.rows == 2500
    assert seen[-1] == (1.0, 2500) and len(seen) >= 3  # one report per chunk, then done
    direct = pd.read_csv(path, **opts.pandas_kwargs())
    assert np.allclose(cache.column("q3"), direct["q3"])
    assert cache.stats["q3"].lo == direct["q3"].min() and cache.stats["q3"].hi == direct["q3"].max()
    seen.clear()
    assert ensure_cache(path, opts, None, tmp_path / "cache", lambda f, r: seen.append(r)).path == cache.path
    assert seen == [2500]  # cache hit: no second conversion
    os.utime(path, ns=(1, 1))
    assert cache_path(path, opts, tmp_path / "cache") != cache.path  # modified file: new key


def test_a_large_text_file_is_converted_in_parallel_segments_in_file_order(tmp_path, monkeypatch):
    from panel_apps import ingest
    monkeypatch.setattr(ingest, "FIRST_SEGMENT_BYTES", 4096)  # many segments on a small file
    monkeypatch.setattr(ingest, "SEGMENT_BYTES", 50_000)
    path = tmp_path / "josephson.txt"
    sample_data_main(["--out", str(path), "--rows", "20000"])
    opts = sniff_text(path)
    partial_rows = []
    cache = ensure_cache(path, opts, None, tmp_path / "cache", on_rows=lambda view: partial_rows.append(view.rows),
                         workers=2)
    direct = pd.read_csv(path, **opts.pandas_kwargs())
    for column in direct:
        assert np.array_equal(cache.column(column), direct[column].to_numpy()), column
    assert len(partial_rows) > 10 and partial_rows == sorted(partial_rows) and partial_rows[-1] == 20000


# ----------------------------------------------------------------- binary formats
def test_parquet_preview_and_columns(tmp_path, table):
    path = tmp_path / "data.parquet"
    table.to_parquet(path)
    p = preview(path, rows=5)
    assert p.format == "parquet" and p.total_rows == 200 and len(p.frame) == 5
    assert read_columns(path, "parquet", {}, ["n"])["n"].sum() == table["n"].sum()


def test_hdf5_pandas_store(tmp_path, table):
    path = tmp_path / "store.h5"
    table.to_hdf(path, key="run1", format="table")
    p = preview(path)
    assert p.format == "hdf5" and p.options == {"dataset": "/run1"} and p.total_rows == 200
    assert list(p.frame.columns) == ["t", "charge", "n"]


def test_hdf5_plain_datasets_group_and_2d_array(tmp_path, table):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h5:
        g = h5.create_group("events")
        for col in table:
            g[col] = table[col].to_numpy()
        h5["matrix"] = np.arange(30.0).reshape(10, 3)
    p = preview(path)
    assert set(p.choices) == {"/events", "/matrix"}
    assert sorted(p.frame.columns) == ["charge", "n", "t"]
    m = preview(path, {"dataset": "/matrix"})
    assert list(m.frame.columns) == ["col1", "col2", "col3"] and m.total_rows == 10


def test_root_ttree(tmp_path, table):
    uproot = pytest.importorskip("uproot")
    path = tmp_path / "events.root"
    with uproot.recreate(path) as f:
        f.mktree("events", {"t": "float64", "charge": "float64"})
        f["events"].extend({"t": table["t"].to_numpy(), "charge": table["charge"].to_numpy()})
        f["ntuple"] = {"x": np.arange(3.0)}  # uproot 5 writes a dict as an RNTuple
    p = preview(path)
    assert p.format == "root" and p.options == {"tree": "events"} and p.total_rows == 200
    full = read_columns(path, "root", p.options, ["charge"])
    assert np.allclose(full["charge"], table["charge"])
    assert preview(path, {"tree": "ntuple"}).frame["x"].tolist() == [0.0, 1.0, 2.0]


# ----------------------------------------------------------------- bad input, readable messages
def test_binary_garbage_is_refused_readably(tmp_path):
    path = tmp_path / "garbage.dat"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(LoadError, match="binary data"):
        preview(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(LoadError, match="empty"):
        preview(path)


def test_header_but_zero_rows(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("t,charge\n")
    with pytest.raises(LoadError, match="no data rows|zero data rows"):
        preview(path)


def test_ragged_rows_name_the_line(tmp_path):
    path = tmp_path / "ragged.txt"
    path.write_text("1 2 3\n4 5 6\n7 8 9 10\n")
    with pytest.raises(LoadError, match=r"line 3 has 4 values where 3 were expected"):
        preview(path)


def test_ragged_row_deep_in_a_large_file_is_reported_at_ingest(tmp_path):
    path = tmp_path / "ragged-late.txt"
    path.write_text("1 2 3\n" * 3000 + "1 2 3 4\n")
    opts = sniff_text(path)
    with pytest.raises(LoadError, match="different numbers of values: line 3,001 has 4 values"):
        ensure_cache(path, opts, None, tmp_path / "cache", chunk_rows=1000)
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written cache left behind


def test_bad_lines_can_be_skipped_and_are_counted(tmp_path):
    path = tmp_path / "ragged-late.txt"
    path.write_text("1 2 3\n" * 3000 + "1 2 3 4\n" + "4 5 6\n" * 10 + "7 oops 9\n" + "1 2 3\n")
    opts = sniff_text(path)
    opts.skip_bad_lines = True
    cache = ensure_cache(path, opts, None, tmp_path / "cache", chunk_rows=1000)
    assert cache.rows == 3011 and cache.skipped_lines == 2
    assert cache.column("col1")[-11:].tolist() == [4.0] * 10 + [1.0]


def test_non_numeric_columns_are_shown_but_not_offered(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("name,energy\nalpha,1.5\nbeta,2.5\n")
    source = DataSource(path)
    assert source.numeric_columns == ["energy"]
    assert source.preview.dtypes["name"] in ("object", "str", "string")


def test_text_in_a_number_column_later_in_the_file(tmp_path):
    path = tmp_path / "late-text.txt"
    path.write_text("1.0 2.0\n" * 3000 + "1.0 oops\n")
    opts = sniff_text(path)
    with pytest.raises(LoadError, match="text where numbers were expected"):
        ensure_cache(path, opts, ["col1", "col2"], tmp_path / "cache", chunk_rows=1000)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("1 2\n")
    real_open = open

    def deny(file, *a, **k):  # tests run as root, where chmod 000 does not stop reading
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(LoadError, match="not allowed to read"):
        preview(path)


def test_file_deleted_while_plotting(tmp_path):
    path = tmp_path / "vanishing.txt"
    sample_data_main(["--out", str(path), "--rows", "100"])
    source = DataSource(path)
    source.prepare(tmp_path / "cache")
    spec = PlotSpec()
    spec.set_columns(source.available_columns(spec))
    assert len(source.table(spec)) == 100
    path.unlink()
    with pytest.raises(LoadError, match="deleted or moved"):
        source.table(spec)
    with pytest.raises(LoadError, match="deleted or moved"):
        preview(path)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(LoadError, match="is a folder"):
        preview(tmp_path)


# ----------------------------------------------------------------- allowed roots, no way out
@pytest.fixture
def roots(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "run.txt").write_text("1 2\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("1 2\n")
    (home / "link-out").symlink_to(outside / "secret.txt")
    (home / "dir-out").symlink_to(outside)
    (home / "link-in.txt").symlink_to(home / "data" / "run.txt")
    return AllowedRoots.of([home]), home


def test_file_inside_home_resolves(roots):
    allowed, home = roots
    assert allowed.resolve(home, "data/run.txt") == (home / "data" / "run.txt").resolve()
    assert allowed.resolve(home, "link-in.txt") == (home / "data" / "run.txt").resolve()


@pytest.mark.parametrize("attempt, message", [
    ("../outside/secret.txt", "uses '..'"),
    ("data/../../outside/secret.txt", "uses '..'"),
    ("/etc/passwd", "absolute path"),
    ("~root/.bashrc", "absolute path"),
    ("link-out", "link leading outside"),
    ("dir-out/secret.txt", "link leading outside"),
    ("", "Choose a file"),
])
def test_path_escape_attempts_are_refused(roots, attempt, message):
    allowed, home = roots
    with pytest.raises(PathRefused, match=message):
        allowed.resolve(home, attempt)


def test_unknown_root_is_refused(roots):
    allowed, _ = roots
    with pytest.raises(PathRefused, match="not one of your data folders"):
        allowed.resolve("/etc", "passwd")


def test_file_list_hides_links_leading_outside(roots):
    allowed, home = roots
    assert allowed.list_files(home) == ["data/run.txt", "link-in.txt"]


def test_text_options_round_trip():
    opts = TextOptions(delimiter=",", header=True, names=[], comment=None, skiprows=2)
    assert TextOptions.from_dict(opts.to_dict()) == opts


def test_hdf5_columns_come_in_the_order_they_were_written_else_in_natural_order(tmp_path):
    path = tmp_path / "ordered.h5"
    with h5py.File(path, "w") as h5:
        written = h5.create_group("written", track_order=True)  # the file keeps the order of writing
        plain = h5.create_group("plain")
        for name in ["t", "q2", "q10", "q1"]:
            written[name] = np.arange(5.0)
            plain[name] = np.arange(5.0)
        h5.attrs["x"] = 1
        for name in ["b10", "b9"]:
            h5[name] = np.arange(5.0)
    assert list(preview(path, {"dataset": "/written"}).frame.columns) == ["t", "q2", "q10", "q1"]
    assert list(preview(path, {"dataset": "/plain"}).frame.columns) == ["q1", "q2", "q10", "t"]  # not q1, q10, q2
    assert list(preview(path, {"dataset": "/"}).frame.columns) == ["b9", "b10"]
    assert list(read_columns(path, "hdf5", {"dataset": "/plain"}, None).columns) == ["q1", "q2", "q10", "t"]

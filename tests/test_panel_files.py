"""A student's files are read safely: the file checked is the file read, caches cannot be
planted or half-written, and a small file cannot make the server allocate gigabytes."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from panel_apps.dataset import DataSource
from panel_apps.paths import AllowedRoots, PathRefused
from panel_apps.spec import PlotSpec
from tests.panel_page import click, error_text, type_in

PATH = "…or type a path inside the folder"


@pytest.fixture
def roots(tmp_path):
    """A home with data/run.txt, and outside it a folder with a secret file of the same name."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "run.txt").write_text("t q\n1 10\n2 20\n3 30\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.txt").write_text("t q\n666 666\n")
    return AllowedRoots.of([home]), home, outside


def _swap_folder_for_link(home, outside):
    (home / "data").rename(home / "data-before")
    (home / "data").symlink_to(outside)


# ----------------------------------------------------------------- the file checked is the file read
def test_a_folder_swapped_for_a_link_between_check_and_open_is_refused(roots, monkeypatch):
    from panel_apps import paths
    allowed, home, outside = roots
    assert allowed.resolve(home, "data/run.txt") == home / "data" / "run.txt"  # the check passes
    real_open = paths._open_descriptor

    def swapped_meanwhile(path):  # another process wins the race between check and open
        _swap_folder_for_link(home, outside)
        return real_open(path)

    monkeypatch.setattr(paths, "_open_descriptor", swapped_meanwhile)
    with pytest.raises(PathRefused, match="outside"):
        allowed.open(home, "data/run.txt")


def test_a_file_swapped_for_a_link_between_check_and_open_is_refused(roots, monkeypatch):
    from panel_apps import paths
    allowed, home, outside = roots
    real_open = paths._open_descriptor

    def swapped_meanwhile(path):
        (home / "data" / "run.txt").unlink()
        (home / "data" / "run.txt").symlink_to(outside / "run.txt")
        return real_open(path)

    monkeypatch.setattr(paths, "_open_descriptor", swapped_meanwhile)
    with pytest.raises(PathRefused, match="link"):
        allowed.open(home, "data/run.txt")


@pytest.mark.parametrize("fmt", ["text", "parquet", "hdf5", "root"])
def test_what_was_opened_is_read_even_if_the_name_now_leads_elsewhere(roots, tmp_path, fmt):
    allowed, home, outside = roots
    name = {"text": "run.txt", "parquet": "run.parquet", "hdf5": "run.h5", "root": "run.root"}[fmt]
    mine, secret = pd.DataFrame({"t": [1.0, 2.0, 3.0], "q": [10.0, 20.0, 30.0]}), pd.DataFrame({"t": [666.0], "q": [666.0]})
    for frame, folder in ((mine, home / "data"), (secret, outside)):
        if fmt == "parquet":
            frame.to_parquet(folder / name)
        elif fmt == "hdf5":
            frame.to_hdf(folder / name, key="run", format="table")
        elif fmt == "root":
            import uproot
            with uproot.recreate(folder / name) as f:
                f["run"] = {c: frame[c].to_numpy() for c in frame}
    source = DataSource(allowed.open(home, f"data/{name}"))
    _swap_folder_for_link(home, outside)
    source.prepare(tmp_path / "cache")
    spec = PlotSpec()
    spec.set_columns(source.available_columns(spec))
    table = source.table(spec)
    assert table["q"].tolist() == [10.0, 20.0, 30.0]
    source.close()


def test_only_regular_files_inside_the_roots_are_opened(roots):
    allowed, home, _ = roots
    os.mkfifo(home / "pipe.txt")  # opening a pipe for reading would wait for a writer forever
    with pytest.raises(PathRefused, match="not a regular file"):
        allowed.open(home, "pipe.txt")
    with pytest.raises(PathRefused, match="is a folder"):
        allowed.open(home, "data")
    with pytest.raises(PathRefused, match="does not exist"):
        allowed.open(home, "data/nothing.txt")
    with pytest.raises(PathRefused, match="uses '..'"):
        allowed.open(home, "../outside/run.txt")


def test_the_previous_file_is_closed_when_the_student_opens_another(roots):
    from panel_apps.app import PlotApp
    from panel_apps.config import PlotAppConfig
    allowed, home, _ = roots
    (home / "other.txt").write_text("a b\n1 2\n")
    app = PlotApp(PlotAppConfig(home=str(home), data_roots=[]))
    type_in(app, PATH, "data/run.txt")
    click(app, "Preview")
    first = app.source
    assert not first.file.closed
    type_in(app, PATH, "other.txt")
    click(app, "Preview")
    assert first.file.closed and not app.source.file.closed


# ----------------------------------------------------------------- a conversion is complete or nothing
@pytest.mark.parametrize("change", ["cut short", "appended to"])
def test_a_text_file_changed_while_it_converts_is_reported_and_no_cache_is_kept(tmp_path, change):
    from panel_apps.ingest import ensure_cache
    from panel_apps.loaders import LoadError, sniff_text
    from panel_apps.sample_data import main as sample_data
    path = tmp_path / "still-writing.txt"
    sample_data(["--out", str(path), "--rows", "20000"])  # about 3 MB, converted 1,000 rows at a time
    options, size = sniff_text(path), path.stat().st_size

    def the_lab_program_writes_meanwhile(fraction, rows):
        if rows == 1000:
            if change == "cut short":
                os.truncate(path, size // 3)
            else:
                with open(path, "ab") as fh:
                    fh.write(b" 1.000000e+00" * 12 + b"\n")

    with pytest.raises(LoadError, match="changed while it was being converted"):
        ensure_cache(path, options, None, tmp_path / "cache", the_lab_program_writes_meanwhile, chunk_rows=1000)
    assert list((tmp_path / "cache").iterdir()) == []  # no cache, not even a partial one


# ----------------------------------------------------------------- the cache belongs to its user
def _converted(tmp_path, name="run.txt", rows=200):
    from panel_apps.loaders import sniff_text
    from panel_apps.sample_data import main as sample_data
    path = tmp_path / name
    if not path.exists():
        sample_data(["--out", str(path), "--rows", str(rows)])
    options = sniff_text(path)
    return path, options, ensure_cache(path, options, None, tmp_path / "cache").path


def ensure_cache(*args, **kwargs):
    from panel_apps.ingest import ensure_cache as ensure
    return ensure(*args, **kwargs)


def _rows(entry) -> int:
    import json
    return json.loads((entry / "meta.json").read_text())["rows"]


def test_the_cache_folder_is_private_to_its_user(tmp_path):
    from panel_apps.loaders import LoadError
    path, options, cache = _converted(tmp_path)
    folder = tmp_path / "cache"
    assert cache.parent == folder and folder.stat().st_mode & 0o777 == 0o700
    assert folder.stat().st_uid == os.geteuid()
    os.chmod(folder, 0o777)  # opened up by hand: repaired
    ensure_cache(path, options, None, folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)  # (tests run as root) a folder another user made first
    with pytest.raises(LoadError, match="belongs to another user"):
        ensure_cache(path, options, None, theirs)
    (tmp_path / "linked").symlink_to(theirs)
    with pytest.raises(LoadError, match="is a link"):
        ensure_cache(path, options, None, tmp_path / "linked")


def test_a_shared_cache_folder_gets_a_private_folder_per_user(tmp_path):
    import pwd

    from panel_apps.app import PlotApp
    from panel_apps.config import PlotAppConfig
    from panel_apps.sample_data import main as sample_data
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: every user may create their folder in it
    sample_data(["--out", str(tmp_path / "run.txt"), "--rows", "100"])
    app = PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[], cache_dir=str(shared)))
    type_in(app, PATH, "run.txt")
    click(app, "Preview")
    import asyncio
    asyncio.run(app.load())
    assert not error_text(app), app.error
    mine = shared / pwd.getpwuid(os.geteuid()).pw_name
    assert app.source.cached.path.parent == mine and mine.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("planted", ["folder", "file", "link"])
def test_a_planted_cache_entry_is_not_trusted(tmp_path, planted):
    import json
    import shutil
    path, options, cache = _converted(tmp_path)
    shutil.rmtree(cache)
    if planted == "folder":  # someone's data under the predictable name, recording no source
        cache.mkdir()
        np.full(1, 666.0).tofile(cache / "c0.f64")
        (cache / "meta.json").write_text(json.dumps({"format": 1, "rows": 1, "names": ["t"], "stats": {}}))
    elif planted == "file":
        pd.DataFrame({"t": [666.0]}).to_parquet(cache)
    else:
        (tmp_path / "elsewhere").mkdir()
        cache.symlink_to(tmp_path / "elsewhere")
    entry = ensure_cache(path, options, None, tmp_path / "cache")
    assert entry.path == cache and cache.is_dir() and not cache.is_symlink()
    assert entry.rows == _rows(cache) == 200 and 666.0 not in entry.column("t")  # converted again from the source


def test_a_cache_entry_made_for_another_source_is_not_trusted(tmp_path):
    import shutil

    from panel_apps.ingest import cache_path
    other, options, other_cache = _converted(tmp_path, "other.txt", rows=50)
    path, _, _ = _converted(tmp_path, "run.txt", rows=200)
    target = cache_path(path, options, tmp_path / "cache")
    shutil.rmtree(target)
    shutil.copytree(other_cache, target)  # a well-formed cache, recording another file's identity
    assert ensure_cache(path, options, None, tmp_path / "cache").path == target
    assert _rows(target) == 200


def test_a_cache_entry_owned_by_another_user_is_not_trusted(tmp_path):
    path, options, cache = _converted(tmp_path)
    for part in [cache, *cache.iterdir()]:
        os.chown(part, 12345, 12345)  # right name and content, but not written by this user
    entry = ensure_cache(path, options, None, tmp_path / "cache")
    assert entry.path == cache and cache.stat().st_uid == os.geteuid() and entry.rows == 200
    assert all(p.stat().st_uid == os.geteuid() for p in cache.iterdir())
    (cache / "c0.f64").unlink()
    (cache / "c0.f64").symlink_to(cache / "c1.f64")  # a column swapped for a link
    assert ensure_cache(path, options, None, tmp_path / "cache").column("t")[1] != \
        ensure_cache(path, options, None, tmp_path / "cache").column("q1")[1]
    assert not (cache / "c0.f64").is_symlink()


# ----------------------------------------------------------------- a small file cannot make the server allocate gigabytes
BOMB_ROWS = 500_000_000  # one float64 column: 4 GB in memory


@pytest.fixture(scope="module")
def parquet_bomb(tmp_path_factory):
    """A 2 MB Parquet file of 500 million equal values (dictionary/RLE-encoded row groups)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = tmp_path_factory.mktemp("bomb") / "constant.parquet"
    table = pa.table({"x": pa.array(np.full(10_000_000, 1.5))})
    with pq.ParquetWriter(path, table.schema) as writer:
        for _ in range(BOMB_ROWS // len(table)):
            writer.write_table(table, row_group_size=len(table))
    assert path.stat().st_size < 5e6
    return path


def _hist_of_x(source):
    spec = PlotSpec(kind="hist")
    spec.set_columns(source.available_columns(spec))
    return spec


def test_a_small_parquet_file_that_would_need_gigabytes_is_refused_with_its_size(parquet_bomb):
    from panel_apps.loaders import LoadError
    source = DataSource(parquet_bomb, max_read_bytes=1_000_000_000)
    assert source.total_rows == BOMB_ROWS  # the preview reads only the first rows
    with pytest.raises(LoadError, match=r"4\.0 GB .*500,000,000 rows.*limit set by your admin is 1\.0 GB"):
        source.table(_hist_of_x(source))


def test_an_hdf5_dataset_that_would_need_gigabytes_is_refused_with_its_size(tmp_path):
    import h5py

    from panel_apps.loaders import LoadError
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as h5:  # chunks never written take no room on disk
        h5.create_dataset("x", shape=(BOMB_ROWS,), dtype="f8", chunks=(1_000_000,), compression="gzip")
    assert path.stat().st_size < 100_000
    source = DataSource(path, max_read_bytes=1_000_000_000)
    with pytest.raises(LoadError, match=r"4\.0 GB .*500,000,000 rows.*1\.0 GB"):
        source.table(_hist_of_x(source))


@pytest.mark.parametrize("fmt", ["hdf5-compound", "hdf5-matrix", "hdf5-store", "root", "text"])
def test_every_format_is_measured_before_its_columns_are_read(tmp_path, fmt):
    import h5py

    from panel_apps.loaders import LoadError
    frame = pd.DataFrame({"x": np.arange(1000.0), "y": np.arange(1000.0)})
    path = tmp_path / ("data.root" if fmt == "root" else "data.txt" if fmt == "text" else "data.h5")
    if fmt == "hdf5-compound":
        with h5py.File(path, "w") as h5:
            h5["table"] = frame.to_records(index=False)
    elif fmt == "hdf5-matrix":
        with h5py.File(path, "w") as h5:
            h5["matrix"] = frame.to_numpy()
    elif fmt == "hdf5-store":
        frame.to_hdf(path, key="run", format="table")
    elif fmt == "root":
        import uproot
        with uproot.recreate(path) as f:
            f.mktree("events", {"x": "float64", "y": "float64"})
            f["events"].extend({"x": frame["x"].to_numpy(), "y": frame["y"].to_numpy()})
    else:
        frame.to_csv(path, index=False)
    source = DataSource(path, max_read_bytes=4000)  # 1,000 rows x 8 bytes: one column does not fit
    source.prepare(tmp_path / "cache")
    with pytest.raises(LoadError, match=r"8\.0 kB .*1,000 rows.*limit set by your admin is 4\.0 kB"):
        source.table(_hist_of_x(source))
    source.max_read_bytes = 10_000
    assert len(source.table(_hist_of_x(source))) == 1000


def test_the_app_refuses_the_memory_bomb_and_stays_usable(parquet_bomb, tmp_path, monkeypatch):
    import asyncio
    import shutil

    from panel_apps.app import PlotApp
    from panel_apps.config import PlotAppConfig
    from panel_apps.sample_data import main as sample_data
    shutil.copyfile(parquet_bomb, tmp_path / "constant.parquet")
    sample_data(["--out", str(tmp_path / "good.txt"), "--rows", "100"])
    monkeypatch.setenv("NEBULAHUB_MAX_READ_BYTES", "1000000000")
    app = PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[]))
    assert app.config.max_read_bytes == 1_000_000_000
    type_in(app, PATH, "constant.parquet")
    click(app, "Preview")
    type_in(app, "Kind", "hist")
    asyncio.run(app.load())
    assert "limit set by your admin is 1.0 GB" in error_text(app)
    type_in(app, PATH, "good.txt")
    click(app, "Preview")
    asyncio.run(app.load())
    assert not error_text(app) and len(app.frame) == 100


def test_the_default_limit_is_a_quarter_of_the_memory(monkeypatch):
    from panel_apps.config import PlotAppConfig
    monkeypatch.delenv("NEBULAHUB_MAX_READ_BYTES", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert PlotAppConfig().max_read_bytes == physical // 4

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
    app.path_input.value = "data/run.txt"
    app._guard(app._preview)
    first = app.source
    assert not first.file.closed
    app.path_input.value = "other.txt"
    app._guard(app._preview)
    assert first.file.closed and not app.source.file.closed

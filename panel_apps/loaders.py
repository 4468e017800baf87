"""Read data files of the formats students meet: text tables, Parquet, HDF5 and ROOT TTrees.

Two steps, cheap first: :func:`preview` reads only the first rows (plus metadata) so the student
sees column names and types before anything heavy happens; :func:`read_columns` reads whole
columns of the binary formats (text files go through :mod:`panel_apps.ingest` into Parquet first).
Every failure a user can cause is a :class:`LoadError` carrying a sentence to show in the app.

Each function takes a path or an already opened :class:`~panel_apps.paths.OpenedFile`; readers
get ``os.fspath(source)`` (for an opened file its descriptor's ``/proc/self/fd`` path) and
messages use ``source.name``, the name the student knows.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SNIFF_BYTES = 256 * 1024
TEXT_DELIMITERS = (None, "\t", ",", ";", "|")  # None: runs of whitespace; what sniffing and the app choose
COMMENT_CHARS = ("#", "%", "!", "//")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eEdD][+-]?\d+)?|\.\d+([eEdD][+-]?\d+)?|nan|NaN|inf|-inf|Inf)$")


class LoadError(ValueError):
    """A file cannot be read as data; the message is meant for the user."""


@dataclass
class TextOptions:
    """How a text table is laid out. ``delimiter`` None means runs of whitespace."""

    delimiter: str | None = None
    header: bool = False
    names: list[str] = field(default_factory=list)
    comment: str | None = "#"
    skiprows: int = 0
    skip_bad_lines: bool = False  # lines with too many values (or text in a number column) are skipped, counted

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "TextOptions":
        data = dict(data or {})
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def pandas_kwargs(self) -> dict:
        """Keyword arguments for ``pandas.read_csv`` (C engine)."""
        kw = {"sep": r"\s+" if self.delimiter is None else self.delimiter, "comment": self.comment or None,
              "skiprows": self.skiprows, "skip_blank_lines": True}
        if self.header:
            kw["header"] = 0
        else:
            kw["header"] = None
        if self.names:
            kw["names"] = list(self.names)
        if self.skip_bad_lines:
            kw["on_bad_lines"] = "skip"
        return kw


@dataclass
class Preview:
    """The first rows of a file, what was detected, and how many rows the file has (if known)."""

    format: str
    frame: pd.DataFrame
    options: dict
    total_rows: int | None
    choices: list[str] = field(default_factory=list)  # datasets / trees to choose from

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c in self.frame.columns if pd.api.types.is_numeric_dtype(self.frame[c])
                and not pd.api.types.is_bool_dtype(self.frame[c])]

    @property
    def dtypes(self) -> dict[str, str]:
        return {c: str(t) for c, t in self.frame.dtypes.items()}


def display_name(source) -> str:
    """The file name the student knows, for messages."""
    return source.name if hasattr(source, "name") else Path(source).name


def detect_format(path: Path) -> str:
    """'parquet', 'hdf5', 'root' or 'text', from the file's first bytes; LoadError otherwise."""
    head = _read_head(path, SNIFF_BYTES)
    if not head:
        raise LoadError(f"'{display_name(path)}' is empty (0 bytes).")
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:4] == b"root":
        return "root"
    sample = head[:65536]
    if b"\x00" in sample or _binary_fraction(sample) > 0.05:
        raise LoadError(f"'{display_name(path)}' is not a text table nor a Parquet, HDF5 or ROOT file "
                        "(it looks like binary data).")
    return "text"


def _binary_fraction(data: bytes) -> float:
    text_bytes = set(range(32, 127)) | {9, 10, 13, 12}
    odd = sum(1 for b in data if b not in text_bytes and b < 128)
    return odd / max(1, len(data))


def _read_head(path: Path, n: int) -> bytes:
    name = display_name(path)
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise LoadError(f"'{name}' does not exist (any more): was it deleted or moved?") from None
    except IsADirectoryError:
        raise LoadError(f"'{name}' is a folder, not a file.") from None
    except PermissionError:
        raise LoadError(f"You are not allowed to read '{name}' (file permissions).") from None
    except OSError as exc:
        raise LoadError(f"'{name}' cannot be read: {exc.strerror or exc}.") from None


def sniff_text(path: Path) -> TextOptions:
    """Guess delimiter, header and comment lines from the start of a text file."""
    head = _read_head(path, SNIFF_BYTES).decode("utf-8", errors="replace")
    lines = head.splitlines()
    if len(head) == SNIFF_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut in half
    comment = None
    data_lines, comment_lines = [], []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        marker = next((c for c in COMMENT_CHARS if stripped.startswith(c)), None)
        if marker and not data_lines:
            comment = comment or marker
            comment_lines.append(stripped[len(marker):].strip())
            continue
        data_lines.append(line)
    if not data_lines:
        raise LoadError(f"'{display_name(path)}' has no data rows (only comments or blank lines).")
    delimiter = _guess_delimiter(data_lines[:200])
    split = (lambda s: s.split()) if delimiter is None else (lambda s: [t.strip() for t in s.split(delimiter)])
    first = split(data_lines[0])
    rest = [split(line) for line in data_lines[1:50]]
    header = not any(_NUMBER.match(t) for t in first) and (
        not rest or any(_NUMBER.match(t) for row in rest for t in row))  # a lone word row is a header
    names: list[str] = []
    if not header and comment_lines:
        # lab programs often write "# t q1 q2 ..." as the last comment line
        candidate = comment_lines[-1].replace(",", " ").split() if delimiter in (None, ",") else \
            [t.strip() for t in comment_lines[-1].split(delimiter)]
        if len(candidate) == len(first) and not any(_NUMBER.match(t) for t in candidate):
            names = candidate
    if not header and not names:
        names = [f"col{i + 1}" for i in range(len(first))]
    # a comment char must be a single character for pandas; '//' style files are rare, skip them
    return TextOptions(delimiter=delimiter, header=header, names=names,
                       comment=comment if comment and len(comment) == 1 else None, skiprows=0)


def _guess_delimiter(lines: list[str]) -> str | None:
    for delim in TEXT_DELIMITERS[1:]:
        counts = {line.count(delim) for line in lines}
        if len(counts) == 1 and counts != {0}:
            return delim
    return None


def preview(path: Path, options: dict | None = None, rows: int = 20) -> Preview:
    """The first ``rows`` rows of ``path`` with detected names and dtypes (cheap, whatever the size)."""
    fmt = detect_format(path)
    reader = {"text": _preview_text, "parquet": _preview_parquet, "hdf5": _preview_hdf5, "root": _preview_root}[fmt]
    result = reader(path, dict(options or {}), rows)
    if result.frame.shape[1] == 0:
        raise LoadError(f"'{display_name(path)}' has no columns.")
    if len(result.frame) == 0 or result.total_rows == 0:
        raise LoadError(f"'{display_name(path)}' has column names but zero data rows.")
    return result


def _preview_text(path: Path, options: dict, rows: int) -> Preview:
    opts = TextOptions.from_dict(options) if options else sniff_text(path)
    name = display_name(path)
    try:
        frame = pd.read_csv(os.fspath(path), nrows=rows, **opts.pandas_kwargs())
    except pd.errors.ParserError as exc:
        raise LoadError(f"'{name}' has rows with different numbers of values: {parser_error_detail(exc)}") from None
    except pd.errors.EmptyDataError:
        raise LoadError(f"'{name}' has no data rows.") from None
    except UnicodeDecodeError:
        raise LoadError(f"'{name}' is not readable text (unknown character encoding).") from None
    except (OSError, ValueError) as exc:
        raise LoadError(f"'{name}' cannot be read as a table: {exc}") from None
    frame.columns = [str(c) for c in frame.columns]
    return Preview("text", frame, opts.to_dict(), None)


def parser_error_detail(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if m:
        return f"line {m.group(2)} has {m.group(3)} values where {m.group(1)} were expected."
    return text


def _preview_parquet(path: Path, options: dict, rows: int) -> Preview:
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(os.fspath(path))
        batch = next(pf.iter_batches(batch_size=rows), None)
        frame = batch.to_pandas() if batch is not None else pf.schema_arrow.empty_table().to_pandas()
    except (OSError, ValueError) as exc:
        raise LoadError(f"'{display_name(path)}' is a damaged Parquet file: {exc}") from None
    return Preview("parquet", frame, {}, pf.metadata.num_rows)


def _hdf5_tables(path: Path) -> dict[str, tuple[int, list[str]]]:
    """Tables inside an HDF5 file: key -> (rows, columns). Pandas stores and plain h5py datasets."""
    import h5py
    found: dict[str, tuple[int, list[str]]] = {}
    with h5py.File(os.fspath(path), "r") as h5:
        def visit(name, obj):
            if not isinstance(obj, h5py.Group):
                return
            if "pandas_type" in obj.attrs:  # written by pandas.HDFStore: one table per group
                found["/" + name.strip("/")] = (-1, [])
                return
            cols = {k: v for k, v in obj.items() if isinstance(v, h5py.Dataset) and v.ndim == 1
                    and v.dtype.kind in "iufb"}
            lengths = {v.shape[0] for v in cols.values()}
            if len(cols) >= 1 and len(lengths) == 1:
                found["/" + name.strip("/") if name else "/"] = (lengths.pop(), group_order(obj, cols))
        visit("", h5)
        h5.visititems(visit)
        def datasets(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.ndim == 2 and obj.dtype.kind in "iuf":
                found["/" + name] = (obj.shape[0], [f"col{i + 1}" for i in range(obj.shape[1])])
            elif isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.names:
                found["/" + name] = (obj.shape[0], list(obj.dtype.names))
        h5.visititems(datasets)
    return found


def _preview_hdf5(path: Path, options: dict, rows: int) -> Preview:
    try:
        tables = _hdf5_tables(path)
    except OSError as exc:
        raise LoadError(f"'{display_name(path)}' is a damaged HDF5 file: {exc}") from None
    if not tables:
        raise LoadError(f"'{display_name(path)}' contains no table-like data (numeric columns of equal length).")
    key = options.get("dataset") or next(iter(tables))
    if key not in tables:
        raise LoadError(f"'{display_name(path)}' has no table '{key}'. Tables: {', '.join(tables)}.")
    frame = read_hdf5(path, key, None, stop=rows)
    total = tables[key][0]
    if total < 0:
        with pd.HDFStore(os.fspath(path), "r") as store:
            total = store.get_storer(key).nrows
    return Preview("hdf5", frame, {"dataset": key}, total, list(tables))


def group_order(group, names) -> list[str]:
    """The columns of an HDF5 group in the order they were written, when the file kept it (h5py then
    lists them so); else in natural order (``q1, q2, …, q10``: numbers in names compare as numbers)."""
    if group.id.get_create_plist().get_link_creation_order():
        return list(names)
    return sorted(names, key=lambda name: [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)])


def read_hdf5(path: Path, key: str, columns: list[str] | None, stop: int | None = None) -> pd.DataFrame:
    """Columns of one HDF5 table (pandas store group, group of 1-D datasets, 2-D or compound dataset)."""
    import h5py
    path = os.fspath(path)
    with h5py.File(path, "r") as h5:
        obj = h5[key]
        if isinstance(obj, h5py.Group) and "pandas_type" in obj.attrs:
            pandas_store = True
        else:
            pandas_store = False
            if isinstance(obj, h5py.Group):
                names = [k for k, v in obj.items() if isinstance(v, h5py.Dataset) and v.ndim == 1]
                data = {k: obj[k][:stop] for k in (columns or group_order(obj, names))}
            elif obj.dtype.names:  # one field at a time: the others are never read
                data = {k: obj.fields(k)[:stop] for k in (columns or obj.dtype.names)}
            else:
                all_names = [f"col{i + 1}" for i in range(obj.shape[1])]
                data = {n: obj[:stop, all_names.index(n)] for n in (columns or all_names)}
    if pandas_store:
        try:
            frame = pd.read_hdf(path, key, columns=columns, stop=stop)
        except (TypeError, ValueError):  # 'fixed' format stores cannot select columns
            frame = pd.read_hdf(path, key, stop=stop)
            frame = frame[columns] if columns else frame
        return frame.reset_index(drop=True)
    return pd.DataFrame(data)


def _root_trees(path: Path):
    import uproot
    try:
        f = uproot.open(os.fspath(path))
    except Exception as exc:  # uproot raises many kinds for damaged files
        raise LoadError(f"'{display_name(path)}' is a damaged ROOT file: {exc}") from None
    trees = {k.split(";")[0]: k for k, cls in f.classnames().items() if cls in ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")}
    return f, trees


def _flat_branches(tree) -> list[str]:
    """Branches/fields holding one number per entry (jagged or object ones cannot be a plot column)."""
    out = []
    for name in tree.keys():
        try:
            sample = tree.arrays([name], library="np", entry_stop=1)[name]
        except Exception:  # unsupported streamer types: skip the branch, keep the rest
            continue
        if isinstance(sample, np.ndarray) and sample.ndim == 1 and sample.dtype.kind in "iufb":
            out.append(name)
    return out


def _preview_root(path: Path, options: dict, rows: int) -> Preview:
    f, trees = _root_trees(path)
    with f:
        if not trees:
            raise LoadError(f"'{display_name(path)}' contains no TTree to plot.")
        name = options.get("tree") or next(iter(trees))
        if name not in trees:
            raise LoadError(f"'{display_name(path)}' has no tree '{name}'. Trees: {', '.join(trees)}.")
        tree = f[trees[name]]
        branches = [b for b in _flat_branches(tree) if "/" not in b]
        if not branches:
            raise LoadError(f"Tree '{name}' has no branches with one number per entry.")
        frame = pd.DataFrame(tree.arrays(branches, library="np", entry_stop=rows))
        return Preview("root", frame, {"tree": name}, int(tree.num_entries), list(trees))


def read_size(path, fmt: str, options: dict, columns: list[str]) -> tuple[int, int]:
    """(bytes, rows) that reading ``columns`` whole would take in memory, from metadata alone.

    A few megabytes of Parquet (run-length encoded) or HDF5 (unwritten chunks) can hold billions
    of rows: this is asked before any column is read, so the caller can refuse in time.
    """
    name = display_name(path)
    try:
        if fmt == "parquet":
            return _parquet_size(path, columns)
        if fmt == "hdf5":
            return _hdf5_size(path, options["dataset"], columns)
        if fmt == "root":
            f, trees = _root_trees(path)
            with f:
                tree = f[trees[options["tree"]]]
                rows = int(tree.num_entries)
                sizes = [getattr(tree[c].interpretation, "to_dtype", np.dtype("f8")).itemsize for c in columns]
                return rows * sum(sizes), rows
    except LoadError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise LoadError(f"'{name}' could not be read: {exc}") from None
    raise LoadError(f"Unknown format {fmt!r}.")


def _parquet_size(path, columns: list[str]) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(os.fspath(path)).metadata
    schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
    total = 0
    for name in columns:
        kind = schema.field(name).type
        try:
            total += rows * max(1, kind.bit_width // 8)
        except ValueError:  # text and other variable-width values: their size plus one pointer per row
            index = schema.get_field_index(name)
            stored = sum(meta.row_group(g).column(index).total_uncompressed_size for g in range(meta.num_row_groups))
            total += rows * pa.int64().bit_width // 8 + stored
    return total, rows


def _hdf5_size(path, key: str, columns: list[str]) -> tuple[int, int]:
    import h5py
    with h5py.File(os.fspath(path), "r") as h5:
        obj = h5[key]
        if isinstance(obj, h5py.Group) and "pandas_type" in obj.attrs:
            with pd.HDFStore(os.fspath(path), "r") as store:
                storer = store.get_storer(key)
                if storer.is_table:
                    return int(storer.nrows) * 8 * len(columns), int(storer.nrows)
                rows, ncols = (int(n) for n in storer.shape)  # 'fixed' stores are read whole
                return rows * 8 * ncols, rows
        if isinstance(obj, h5py.Group):
            rows = max((obj[c].shape[0] for c in columns), default=0)
            return sum(obj[c].shape[0] * obj[c].dtype.itemsize for c in columns), rows
        rows = obj.shape[0]
        if obj.dtype.names:
            return rows * sum(obj.dtype.fields[c][0].itemsize for c in columns), rows
        return rows * obj.dtype.itemsize * len(columns), rows


def read_columns(path: Path, fmt: str, options: dict, columns: list[str]) -> pd.DataFrame:
    """Whole columns of a Parquet, HDF5 or ROOT file (text files are read via the Parquet cache)."""
    if not os.path.exists(os.fspath(path)):
        raise LoadError(f"'{display_name(path)}' does not exist (any more): was it deleted or moved?")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            return pq.read_table(os.fspath(path), columns=columns).to_pandas()
        if fmt == "hdf5":
            return read_hdf5(path, options["dataset"], columns)
        if fmt == "root":
            f, trees = _root_trees(path)
            with f:
                return pd.DataFrame(f[trees[options["tree"]]].arrays(columns, library="np"))
    except LoadError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise LoadError(f"'{display_name(path)}' could not be read: {exc}") from None
    raise LoadError(f"Unknown format {fmt!r}.")

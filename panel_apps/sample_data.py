"""``nebulahub sample-data``: write demo data files for the plotting app.

The default file is small (20,000 rows) so ``make demo`` can drop one into every demo user's
home in a blink. ``--seed-size`` writes a file shaped like the reference service's typical input
(seed 000): 3,310,331 rows x 12 numbers of plain whitespace-separated text, charge-time data of
ten Josephson junctions (time, ten charges, total current), about 0.5 GB.

The writer formats numbers with numpy integer arithmetic into a byte matrix, chunk by chunk,
because ``numpy.savetxt``/``DataFrame.to_csv`` need minutes for 40 million values.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

SEED_ROWS = 3_310_331
N_JUNCTIONS = 10
COLUMNS = ["t"] + [f"q{k}" for k in range(1, N_JUNCTIONS + 1)] + ["current"]
_DIGITS = 6  # mantissa digits after the point, as in "%.6e"
_FIELD = 3 + 1 + _DIGITS + 4  # " -d" + "." + digits + "e+dd"


def josephson_chunk(start: int, stop: int, rng: np.random.Generator, dt: float = 1e-3) -> np.ndarray:
    """Rows ``start:stop`` of the synthetic charge-time table, shape (stop-start, 12)."""
    t = np.arange(start, stop, dtype=np.float64) * dt
    out = np.empty((t.size, len(COLUMNS)))
    out[:, 0] = t
    envelope = 1.0 + 0.3 * np.sin(0.011 * t)
    for k in range(N_JUNCTIONS):
        omega = 1.0 + 0.07 * k
        out[:, k + 1] = envelope * np.sin(omega * t + 0.5 * k) * np.exp(-0.02 * k) + 0.02 * rng.standard_normal(t.size)
    out[:, -1] = out[:, 1:-1].sum(axis=1) * 1e-3
    return out


def format_scientific(values: np.ndarray) -> bytes:
    """Format a 2-D float array as whitespace-separated "%.6e" text rows (Fortran-like layout).

    Each field is 14 bytes wide: a separator space, a sign slot (space or '-'), then d.dddddde+dd.
    """
    n, m = values.shape
    v = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    neg = v < 0
    a = np.abs(v)
    exp = np.zeros(a.shape, dtype=np.int64)
    nz = a > 0
    exp[nz] = np.floor(np.log10(a[nz])).astype(np.int64)
    mant = np.rint(a / np.power(10.0, exp) * 10**_DIGITS).astype(np.int64)
    carry = mant >= 10 ** (_DIGITS + 1)  # 9.9999999 rounds up to 10.000000
    mant[carry] //= 10
    exp[carry] += 1
    tiny = exp < -99  # below what two exponent digits can say: write an exact zero
    mant[tiny] = 0
    exp[tiny] = 0
    exp = np.clip(exp, -99, 99)
    buf = np.empty((n, m, _FIELD), dtype=np.uint8)
    buf[..., 0] = ord(" ")
    buf[..., 1] = np.where(neg, ord("-"), ord(" "))
    for pos in range(_DIGITS, -1, -1):  # mantissa digits, last first
        col = 2 + pos + (1 if pos > 0 else 0)
        buf[..., col] = ord("0") + mant % 10
        mant //= 10
    buf[..., 3] = ord(".")
    buf[..., 4 + _DIGITS] = ord("e")
    buf[..., 5 + _DIGITS] = np.where(exp < 0, ord("-"), ord("+"))
    e = np.abs(exp)
    buf[..., 6 + _DIGITS] = ord("0") + e // 10
    buf[..., 7 + _DIGITS] = ord("0") + e % 10
    lines = np.empty((n, m * _FIELD + 1), dtype=np.uint8)
    lines[:, :-1] = buf.reshape(n, m * _FIELD)
    lines[:, -1] = ord("\n")
    return lines.tobytes()


def write_josephson_text(path: Path, rows: int, header: bool = True, chunk_rows: int = 200_000,
                         seed: int = 3) -> Path:
    """Write ``rows`` rows of the synthetic table to ``path``; returns the path.

    ``header`` adds a ``#`` comment line naming the columns (what many lab programs write).
    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        if header:
            fh.write(("# charge-time data of ten Josephson junctions\n# " + " ".join(COLUMNS) + "\n").encode())
        for start in range(0, rows, chunk_rows):
            stop = min(rows, start + chunk_rows)
            fh.write(format_scientific(josephson_chunk(start, stop, rng)))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nebulahub sample-data``; returns a process exit code."""
    parser = argparse.ArgumentParser(prog="nebulahub sample-data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path.home() / "sample-data" / "josephson.txt",
                        help="file to write (default: ~/sample-data/josephson.txt)")
    parser.add_argument("--rows", type=int, default=20_000, help="number of rows (default 20000)")
    parser.add_argument("--seed-size", action="store_true",
                        help=f"write {SEED_ROWS:,} rows x 12 like the reference service's file (~0.5 GB)")
    parser.add_argument("--no-header", action="store_true", help="omit the '# t q1 ...' comment header")
    args = parser.parse_args(argv)
    rows = SEED_ROWS if args.seed_size else args.rows
    if rows < 0:
        parser.error("--rows must be zero or more")
    path = write_josephson_text(args.out, rows, header=not args.no_header)
    print(f"wrote {rows:,} rows x {len(COLUMNS)} columns to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

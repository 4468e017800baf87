"""Safe formulas for derived columns, e.g. ``sqrt(q1**2 + q2**2)`` or ``t * 1e3``.

The formula is parsed with :mod:`ast` and walked node by node; only arithmetic, comparisons,
boolean ``&``/``|``/``~``, column names, numeric constants and a whitelist of numpy functions are
accepted. Nothing is ever handed to ``eval``: the tree is interpreted here, so attribute access,
subscripts, lambdas, comprehensions and calls outside the whitelist cannot run.
The same checked tree is rendered back to numpy source for "Open as notebook".
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable, Mapping

import numpy as np

FUNCTIONS: dict[str, Callable] = {
    name: getattr(np, name)
    for name in ("sqrt", "exp", "log", "log10", "log2", "log1p", "expm1", "abs", "sin", "cos", "tan",
                 "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "hypot", "floor",
                 "ceil", "sign", "minimum", "maximum", "where", "isfinite", "degrees", "radians")
}
CONSTANTS = {"pi": np.pi, "e": np.e}
MAX_LENGTH = 500

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitAnd: operator.and_, ast.BitOr: operator.or_}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.USub: "-", ast.UAdd: "+", ast.Invert: "~",
           ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


class FormulaError(ValueError):
    """The formula cannot be used; the message says why, in words a student understands."""


def parse(formula: str, columns=None, text_columns=()) -> ast.expr:
    """Parse and check ``formula`` against the available ``columns``; returns the expression tree.

    ``columns`` None accepts any name (a saved configuration checked before its file is known);
    ``text_columns`` are columns holding text, named in the message when a formula uses one.
    A column whose name is also a constant (``e``, ``pi``) is the column.
    """
    text = (formula or "").strip()
    if not text:
        raise FormulaError("The formula is empty.")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"The formula is longer than {MAX_LENGTH} characters.")
    if not text.isprintable() or "#" in text:  # what a one-line text box can hold, and no comments
        raise FormulaError("The formula must be one line of arithmetic, without line breaks or '#' comments.")
    try:
        tree = ast.parse(text, mode="eval").body
    except (RecursionError, MemoryError):
        raise FormulaError("The formula is nested too deeply.") from None
    except SyntaxError as exc:
        raise FormulaError(f"The formula is not valid: {exc.msg} (at character {exc.offset}).") from None
    try:
        _check(tree, None if columns is None else dict.fromkeys(columns), set(text_columns))  # file order
    except RecursionError:
        raise FormulaError("The formula is nested too deeply.") from None
    return tree


def _check(node: ast.AST, columns: dict[str, None] | None, text: set[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"Only numbers can be used as constants, not {node.value!r}.")
        try:
            float(node.value)
        except OverflowError:
            raise FormulaError(f"The number {node.value} is too large for a 64-bit number.") from None
    elif isinstance(node, ast.Name):
        if node.id in text:
            raise FormulaError(f"Column '{node.id}' holds text, not numbers; formulas can only use number columns.")
        if columns is not None and node.id not in columns and node.id not in CONSTANTS:
            hint = " (functions must be called, e.g. sqrt(x))" if node.id in FUNCTIONS else ""
            raise FormulaError(f"Unknown column '{node.id}'{hint}. Columns: {', '.join(columns)}.")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, columns, text)
        _check(node.right, columns, text)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, columns, text)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        for child in [node.left, *node.comparators]:
            _check(child, columns, text)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise FormulaError(f"'{name}' is not an allowed function. Allowed: {', '.join(sorted(FUNCTIONS))}.")
        if node.keywords:
            raise FormulaError("Functions take plain arguments here, no name=value.")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise FormulaError("'*' arguments are not allowed.")
            _check(arg, columns, text)
    elif isinstance(node, ast.Attribute):
        raise FormulaError("Attribute access (a.b) is not allowed in formulas.")
    else:
        raise FormulaError(f"'{ast.unparse(node)}' is not allowed in a formula; use arithmetic, "
                           "comparisons, column names, numbers and the listed functions.")


def evaluate(formula: str, frame: Mapping) -> np.ndarray:
    """Value of ``formula`` for every row of ``frame`` (a DataFrame or a dict of arrays).

    Bounded by construction: numbers are float64, so ``9**9**9`` overflows (a sentence) instead
    of building an integer with millions of digits; only number columns may be used, so no string
    is ever repeated; every step is one array of the table's length. Where a column is involved,
    log(0) or 1/0 give inf/nan like in a spreadsheet; a part made of numbers only that overflows
    or divides by zero is a mistake and is reported.
    """
    columns = list(frame.keys())
    numeric = [c for c in columns if _holds_numbers(frame[c])]
    tree = parse(formula, numeric, [c for c in columns if c not in numeric])
    n = len(frame) if hasattr(frame, "index") else (len(frame[columns[0]]) if columns else 1)
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(_eval(tree, frame))
    except FormulaError:
        raise
    except ZeroDivisionError:
        raise FormulaError("The formula divides by zero.") from None
    except OverflowError:
        raise FormulaError("The formula's numbers are too large for a 64-bit number.") from None
    except MemoryError:
        raise FormulaError("Computing the formula needs more memory than is available; "
                           "use fewer rows (a filter) or a simpler formula.") from None
    except RecursionError:
        raise FormulaError("The formula is nested too deeply.") from None
    except (TypeError, ValueError) as exc:
        raise FormulaError(f"The formula cannot be computed: {exc}") from None
    if result.ndim == 0:
        return np.full(n, result, dtype=float)
    if result.ndim != 1 or len(result) != n:
        raise FormulaError("The formula must give one number per row.")
    if result.dtype.kind not in "biuf":
        raise FormulaError("The formula does not give numbers.")
    return result


def _holds_numbers(values) -> bool:
    try:
        return np.dtype(values.dtype).kind in "biuf"
    except (TypeError, AttributeError):  # pandas' own dtypes (strings): look at the values
        return np.asarray(values).dtype.kind in "biuf"


def _eval(node: ast.AST, frame: Mapping):
    if isinstance(node, ast.Constant):
        return np.float64(node.value)  # never a Python int: 7**7**8 must overflow, not run for hours
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS and node.id not in frame:
            return np.float64(CONSTANTS[node.id])
        return np.asarray(frame[node.id])
    if isinstance(node, ast.BinOp):
        return _apply(node, _BINARY[type(node.op)], _eval(node.left, frame), _eval(node.right, frame))
    if isinstance(node, ast.UnaryOp):
        return _apply(node, _UNARY[type(node.op)], _eval(node.operand, frame))
    if isinstance(node, ast.Compare):
        left, result = _eval(node.left, frame), True
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, frame)
            result = result & _COMPARE[type(op)](left, right)
            left = right
        return result
    if isinstance(node, ast.Call):
        return _apply(node, FUNCTIONS[node.func.id], *[_eval(a, frame) for a in node.args])
    raise FormulaError("Internal error: unchecked formula node.")  # parse() rejects everything else


def _apply(node: ast.AST, function: Callable, *args):
    """``function(*args)``; when all are single numbers, overflow and division by zero are errors."""
    if any(np.ndim(a) for a in args):
        return function(*args)
    with np.errstate(over="raise", divide="raise", invalid="ignore"):
        try:
            return function(*args)
        except FloatingPointError as exc:
            if "overflow" in str(exc):
                raise FormulaError(f"'{ast.unparse(node)}' is too large for a 64-bit number "
                                   "(more than about 1.8e308).") from None
            raise FormulaError(f"'{ast.unparse(node)}' divides by zero.") from None


def to_numpy_source(formula: str, columns, frame_name: str = "df") -> str:
    """Python source computing ``formula`` with numpy on ``frame_name``, for exported notebooks.

    Built from the checked tree, never from the formula's text, so nothing typed can leave an
    expression. Numbers are written as floats, as the app computes them; a part made of numbers
    only is computed with ``np.float64`` there too, so it overflows to inf like in the app instead
    of building a huge Python integer. Names that are columns read the column, others are constants.
    """
    return _source(parse(formula, columns), frame_name, set(columns))


def _source(node: ast.AST, df: str, columns: set[str], numbers_only: bool = False) -> str:
    if isinstance(node, ast.Constant) or _is_signed_number(node):
        number = float(ast.literal_eval(node))
        value = repr(number) if math.isfinite(number) else ("np.inf" if number > 0 else "-np.inf")
        return f"np.float64({value})" if numbers_only else value
    if isinstance(node, ast.Name):
        if node.id in columns:
            return f"{df}[{node.id!r}]"
        return f"np.float64(np.{node.id})" if numbers_only else f"np.{node.id}"
    inner = numbers_only or not _reads_columns(node, columns)
    if isinstance(node, ast.BinOp):
        return (f"({_source(node.left, df, columns, inner)} {_SYMBOL[type(node.op)]} "
                f"{_source(node.right, df, columns, inner)})")
    if isinstance(node, ast.UnaryOp):
        return f"({_SYMBOL[type(node.op)]}{_source(node.operand, df, columns, inner)})"
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]  # chained a<b<c becomes (a<b) & (b<c)
        parts = [f"({_source(a, df, columns, inner)} {_SYMBOL[type(op)]} {_source(b, df, columns, inner)})"
                 for a, op, b in zip(operands, node.ops, operands[1:])]
        return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"
    if isinstance(node, ast.Call):
        return f"np.{node.func.id}(" + ", ".join(_source(a, df, columns, inner) for a in node.args) + ")"
    raise FormulaError("Internal error: unchecked formula node.")


def _is_signed_number(node: ast.AST) -> bool:
    """``-2`` or ``+2``: written as one literal (a sign cannot overflow)."""
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
        and isinstance(node.operand, ast.Constant)


def _reads_columns(node: ast.AST, columns: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in columns for n in ast.walk(node))


def referenced_columns(formula: str, columns) -> list[str]:
    """The columns ``formula`` reads, in order of first use."""
    tree = parse(formula, columns)
    cols = set(columns)
    return list(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in cols))

"""Safe rule expressions over a form's parameters, e.g. ``boundary == "open" and length > 5``.

Admins write them in app descriptors for ``visible_if``, ``enabled_if``, ``min_from`` /
``max_from``, cross-field ``checks`` and conditional command groups. As in
:mod:`panel_apps.expressions`, the text is parsed with :mod:`ast` and every node is checked against
a whitelist; nothing is handed to ``eval``: the checked tree is interpreted here, so attribute
access, subscripts, lambdas, comprehensions and calls outside the whitelist cannot run.

Unlike the plotting app's formulas these are typed when the app is loaded: every parameter has a
:class:`ValueType` (a number, text, a yes/no, a list of choices), so ``points == "64"`` against a
number parameter, or ``gamma and alpha``, is the admin's mistake reported with the descriptor,
never a surprise while a user fills the form. Evaluating with a parameter that has no value (it is
hidden or empty) gives :data:`UNKNOWN`; each caller decides what unknown means (a hidden field,
a skipped check).
"""
from __future__ import annotations

import ast
import enum
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

MAX_LENGTH = 500
MAX_POWER_BITS = 4096  # an integer power larger than this is an overflow, not minutes of arithmetic


class ValueType(str, enum.Enum):
    """What a name or a sub-expression stands for."""

    NUMBER = "number"
    TEXT = "text"
    BOOL = "yes/no"
    LIST = "list"


class ExpressionError(ValueError):
    """The expression cannot be used; the message says why, for the admin writing the descriptor."""


class _Unknown:
    """A value that depends on a parameter without a value; see the module docstring."""

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:  # a forgotten check must not read as "true"
        raise TypeError("UNKNOWN has no truth value; compare with `is UNKNOWN`.")


UNKNOWN = _Unknown()


class _Missing(Exception):
    """Raised inside evaluation when a name has no value."""


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
               ast.Pow: operator.pow}
_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_EQUALITY = {ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCTIONS: dict[str, tuple[Callable, str]] = {
    # name: (function, what it takes, for the message)
    "abs": (abs, "one number"),
    "min": (min, "two or more numbers"),
    "max": (max, "two or more numbers"),
    "len": (len, "one text or list"),
}


@dataclass(frozen=True)
class Expression:
    """A checked expression: its source, its tree, its result type and the parameters it reads."""

    source: str
    tree: ast.expr
    type: ValueType
    names: tuple[str, ...]

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The value for ``values`` (parameter name -> value, None when it has none).

        Returns :data:`UNKNOWN` when a parameter it reads has no value. Raises
        :class:`ExpressionError` when the arithmetic cannot be done (division by zero, a number
        too large): the caller reports the rule as not met.
        """
        try:
            return _eval(self.tree, values)
        except _Missing:
            return UNKNOWN
        except ZeroDivisionError:
            raise ExpressionError(f"'{self.source}' divides by zero.") from None
        except (OverflowError, MemoryError):
            raise ExpressionError(f"'{self.source}' gives a number too large to compute.") from None


def parse(source: str, types: Mapping[str, ValueType], expect: ValueType) -> Expression:
    """Parse and type-check ``source`` against parameter ``types``; its result must be ``expect``."""
    text = source.strip() if isinstance(source, str) else ""
    if not text:
        raise ExpressionError("The expression is empty.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"The expression is longer than {MAX_LENGTH} characters.")
    if not text.isprintable() or "#" in text:
        raise ExpressionError("The expression must be one line, without line breaks or '#' comments.")
    try:
        tree = ast.parse(text, mode="eval").body
        found = _type_of(tree, types)
    except (RecursionError, MemoryError):
        raise ExpressionError("The expression is nested too deeply.") from None
    except SyntaxError as exc:
        raise ExpressionError(f"'{text}' is not a valid expression: {exc.msg} (at character {exc.offset}).") from None
    if found is not expect:
        raise ExpressionError(f"'{text}' gives a {found.value}, but a {expect.value} is needed here.")
    return Expression(text, tree, found, tuple(_names(tree)))


def referenced_names(source: str) -> list[str]:
    """The names ``source`` mentions, in order, whether or not it is a valid expression
    (to follow dependencies between rules even while one of them is wrong)."""
    try:
        tree = ast.parse(source.strip(), mode="eval") if isinstance(source, str) and len(source) <= MAX_LENGTH else None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    return _names(tree) if tree else []


def _names(tree: ast.AST) -> list[str]:
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in functions]
    return list(dict.fromkeys(n.id for n in sorted(names, key=lambda n: n.col_offset)))  # as written


# ------------------------------------------------------------------------------- type checking
def _type_of(node: ast.AST, types: Mapping[str, ValueType]) -> ValueType:
    if isinstance(node, ast.Constant):
        return _constant_type(node.value)
    if isinstance(node, ast.Name):
        if node.id not in types:
            known = ", ".join(sorted(types)) or "none"
            raise ExpressionError(f"Unknown parameter '{node.id}'. Parameters: {known}.")
        return types[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        for item in node.elts:
            if not isinstance(item, ast.Constant) or _constant_type(item.value) is ValueType.BOOL:
                raise ExpressionError(f"A list in an expression holds numbers or texts only: '{ast.unparse(node)}'.")
        return ValueType.LIST
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _expect(value, types, ValueType.BOOL, "'and' / 'or' join yes/no conditions")
        return ValueType.BOOL
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            _expect(node.operand, types, ValueType.BOOL, "'not' takes a yes/no condition")
            return ValueType.BOOL
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            _expect(node.operand, types, ValueType.NUMBER, "a sign applies to a number")
            return ValueType.NUMBER
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _expect(node.left, types, ValueType.NUMBER, "arithmetic works on numbers")
        _expect(node.right, types, ValueType.NUMBER, "arithmetic works on numbers")
        return ValueType.NUMBER
    if isinstance(node, ast.Compare):
        _check_comparison(node, types)
        return ValueType.BOOL
    if isinstance(node, ast.IfExp):
        _expect(node.test, types, ValueType.BOOL, "the condition of 'x if condition else y' is yes/no")
        body = _type_of(node.body, types)
        _expect(node.orelse, types, body, "both sides of 'x if condition else y' are of one kind")
        return body
    if isinstance(node, ast.Call):
        return _check_call(node, types)
    if isinstance(node, ast.Attribute):
        raise ExpressionError("Attribute access (a.b) is not allowed in expressions.")
    raise ExpressionError(f"'{ast.unparse(node)}' is not allowed in an expression; use parameter names, "
                          "numbers, texts in quotes, arithmetic, comparisons, and/or/not, 'in [...]' "
                          "and abs, min, max, len.")


def _constant_type(value) -> ValueType:
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError("Numbers in expressions must be finite.")
        return ValueType.NUMBER
    if isinstance(value, str):
        return ValueType.TEXT
    raise ExpressionError(f"{value!r} cannot be used in an expression; use numbers, texts, True or False.")


def _expect(node: ast.AST, types, wanted: ValueType, why: str) -> None:
    found = _type_of(node, types)
    if found is not wanted:
        raise ExpressionError(f"'{ast.unparse(node)}' is a {found.value}, but {why}.")


def _check_comparison(node: ast.Compare, types) -> None:
    left = node.left
    for op, right in zip(node.ops, node.comparators):
        a, b = _type_of(left, types), _type_of(right, types)
        where = f"{ast.unparse(left)} and {ast.unparse(right)}"
        if isinstance(op, (ast.In, ast.NotIn)):
            if a is ValueType.LIST or b is not ValueType.LIST:
                raise ExpressionError(f"'in' asks whether one value is in a list: {where}.")
        elif type(op) in _ORDER:
            if a is not ValueType.NUMBER or b is not ValueType.NUMBER:
                raise ExpressionError(f"<, <=, > and >= compare numbers, not {where}.")
        elif type(op) in _EQUALITY:
            if a is not b:
                raise ExpressionError(f"{where} are a {a.value} and a {b.value}; they can never be equal.")
        else:
            raise ExpressionError(f"'{ast.unparse(node)}': use ==, !=, <, <=, >, >=, in or not in.")
        left = right


def _check_call(node: ast.Call, types) -> ValueType:
    name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    if name not in _FUNCTIONS or not isinstance(node.func, ast.Name):
        raise ExpressionError(f"'{name}' is not an allowed function. Allowed: {', '.join(_FUNCTIONS)}.")
    takes = _FUNCTIONS[name][1]
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ExpressionError(f"{name}() takes {takes}, written plainly.")
    if name == "len":
        if len(node.args) != 1 or _type_of(node.args[0], types) not in (ValueType.TEXT, ValueType.LIST):
            raise ExpressionError(f"len() takes {takes}.")
        return ValueType.NUMBER
    if (name == "abs") != (len(node.args) == 1) or not node.args:
        raise ExpressionError(f"{name}() takes {takes}.")
    for arg in node.args:
        _expect(arg, types, ValueType.NUMBER, f"{name}() takes {takes}")
    return ValueType.NUMBER


# ------------------------------------------------------------------------------- evaluation
def _eval(node: ast.AST, values: Mapping[str, Any]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = values.get(node.id)
        if value is None:
            raise _Missing
        return value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [item.value for item in node.elts]
    if isinstance(node, ast.BoolOp):
        # every operand is evaluated: "a or b" with a unknown stays unknown even if b is true,
        # so that what a form shows never depends on the order an admin wrote the conditions in
        results = [_eval(v, values) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        return {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}[type(node.op)](operand)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        return _compare(node, values)
    if isinstance(node, ast.IfExp):
        return _eval(node.body, values) if _eval(node.test, values) else _eval(node.orelse, values)
    if isinstance(node, ast.Call):
        args = [_eval(a, values) for a in node.args]
        return _FUNCTIONS[node.func.id][0](*args)
    raise ExpressionError("Internal error: unchecked expression node.")  # parse() refuses the rest


def _compare(node: ast.Compare, values) -> bool:
    left = _eval(node.left, values)
    for op, comparator in zip(node.ops, node.comparators):
        right = _eval(comparator, values)
        if isinstance(op, ast.In):
            ok = left in right
        elif isinstance(op, ast.NotIn):
            ok = left not in right
        else:
            ok = {**_ORDER, **_EQUALITY}[type(op)](left, right)
        if not ok:
            return False
        left = right
    return True


def _power(base, exponent):
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base) > 1 and abs(base).bit_length() * exponent > MAX_POWER_BITS:
            raise OverflowError
        return base ** exponent
    result = float(base) ** float(exponent)  # a float power overflows instead of growing
    if isinstance(result, complex):
        raise OverflowError
    return result

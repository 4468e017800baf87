"""Rule expressions are typed when an app loads and interpreted safely, never eval'd."""
from __future__ import annotations

import pytest

from jobforms.expressions import UNKNOWN, ExpressionError, ValueType, parse, referenced_names

TYPES = {"length": ValueType.NUMBER, "points": ValueType.NUMBER, "boundary": ValueType.TEXT,
         "periodic": ValueType.BOOL, "observables": ValueType.LIST}


def value(source: str, expect=ValueType.BOOL, **values):
    return parse(source, TYPES, expect).evaluate(values)


def test_rules_read_parameters_with_arithmetic_comparisons_and_lists():
    assert value('boundary == "open" and length > 5', boundary="open", length=6) is True
    assert value("points <= length * 40 + 1", points=801, length=20) is True
    assert value('"E" in observables and not periodic', observables=["E", "V"], periodic=False) is True
    assert value("max(length / 4, 1) if periodic else 0", ValueType.NUMBER, length=2, periodic=True) == 1
    assert value("len(observables) >= 2", observables=["E"]) is False
    assert value("1 < length < 10", length=10) is False


def test_a_rule_reading_a_field_without_value_is_unknown():
    assert value('boundary == "open"', boundary=None) is UNKNOWN
    assert value("periodic or length > 1", periodic=True, length=None) is UNKNOWN  # never order-dependent
    with pytest.raises(TypeError):
        bool(UNKNOWN)


def test_arithmetic_that_cannot_be_done_is_an_error_not_a_crash():
    with pytest.raises(ExpressionError, match="divides by zero"):
        value("length / points > 1", length=1, points=0)
    with pytest.raises(ExpressionError, match="too large"):
        value("points ** points > 1", points=10**6)
    with pytest.raises(ExpressionError, match="too large"):
        value("length ** 1000.5 > 1", length=1e10)


def test_a_negative_base_with_a_fractional_power_is_refused():
    with pytest.raises(ExpressionError):
        value("(0 - length) ** 0.5 > 0", length=4)


@pytest.mark.parametrize("source, words", [
    ("__import__('os').system('id')", "not an allowed function"),
    ("length.__class__", "Attribute access"),
    ("observables[0] == 'E'", "not allowed in an expression"),
    ("(lambda: 1)() == 1", "not an allowed function"),
    ("[x for x in observables] == []", "not allowed in an expression"),
    ("open('/etc/passwd')", "not an allowed function"),
    ("exec('1')", "not an allowed function"),
    ("length > 1 # comment", "one line"),
    ("length >\n 1", "one line"),
    ("nope > 1", "Unknown parameter 'nope'"),
    ("length == 'a'", "can never be equal"),
    ("boundary > 1", "compare numbers"),
    ("length and periodic", "'and' / 'or' join yes/no conditions"),
    ("length + 1", "gives a number, but a yes/no is needed"),
    ("'a' in boundary", "'in' asks whether one value is in a list"),
    ("len(length) > 0", "len() takes one text or list"),
    ("min(length) > 0", "min() takes two or more numbers"),
    ("length is 1", "use ==, !="),
    ("1e999 > length", "finite"),
    ("x" * 600, "longer than 500"),
    ("(" * 240 + "1" + ")" * 240 + " > 0", "not a valid expression"),
])
def test_anything_beyond_the_small_language_is_refused_when_the_app_loads(source, words):
    with pytest.raises(ExpressionError) as caught:
        parse(source, TYPES, ValueType.BOOL)
    assert words in str(caught.value), str(caught.value)


def test_names_are_found_in_written_order_without_functions():
    assert referenced_names("max(points, 2) > length and boundary == 'x'") == ["points", "length", "boundary"]
    assert referenced_names("syntax error (") == []

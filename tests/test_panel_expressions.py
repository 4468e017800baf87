"""Students derive columns with formulas; nothing but arithmetic on columns can ever run."""
import numpy as np
import pandas as pd
import pytest

from panel_apps.expressions import FormulaError, evaluate, referenced_columns, to_numpy_source

FRAME = pd.DataFrame({"q1": [3.0, 0.0, -1.0], "q2": [4.0, 1.0, 2.0], "t": [1.0, 10.0, 100.0]})


def test_student_computes_magnitude_from_two_columns():
    assert evaluate("sqrt(q1**2 + q2**2)", FRAME).tolist()[0] == 5.0


@pytest.mark.parametrize("formula, expected", [
    ("t * 1e3", [1e3, 1e4, 1e5]),
    ("log10(t)", [0.0, 1.0, 2.0]),
    ("-q1 + 2 % 3", [-1.0, 2.0, 3.0]),
    ("(q1 > 0) & (q2 > 3)", [True, False, False]),
    ("0 < q2 <= 2", [False, True, True]),
    ("where(q1 > 0, q1, 0)", [3.0, 0.0, 0.0]),
    ("2 * pi", [2 * np.pi] * 3),
])
def test_allowed_formulas(formula, expected):
    assert np.allclose(evaluate(formula, FRAME), expected)


def test_division_by_zero_gives_inf_not_a_crash():
    assert np.isinf(evaluate("q2 / q1", FRAME)[1])


@pytest.mark.parametrize("formula, message", [
    ("__import__('os').system('id')", "not an allowed function"),
    ("q1.__class__", "Attribute access"),
    ("open('/etc/passwd')", "not an allowed function"),
    ("np.sqrt(q1)", "not an allowed function"),
    ("[x for x in q1]", "not allowed in a formula"),
    ("lambda: 1", "not allowed in a formula"),
    ("q1[0]", "not allowed in a formula"),
    ("'text'", "Only numbers"),
    ("energy * 2", "Unknown column 'energy'"),
    ("sqrt", "must be called"),
    ("q1 +", "not valid"),
    ("sqrt(x=q1)", "plain arguments"),
    ("", "empty"),
    ("q1 if q2 else t", "not allowed in a formula"),
])
def test_anything_else_is_refused_with_a_reason(formula, message):
    with pytest.raises(FormulaError, match=message):
        evaluate(formula, FRAME)


def test_formula_turns_into_numpy_code_for_the_notebook():
    src = to_numpy_source("sqrt(q1**2 + q2**2) * pi", ["q1", "q2"])
    assert src == "(np.sqrt(((df['q1'] ** 2.0) + (df['q2'] ** 2.0))) * np.pi)"  # numbers as the app computes them
    assert to_numpy_source("0 < q1 < 1", ["q1"]) == "((0.0 < df['q1']) & (df['q1'] < 1.0))"
    assert to_numpy_source("q1 * -2", ["q1"]) == "(df['q1'] * -2.0)"


def test_a_column_named_like_a_constant_is_the_column_in_the_app_and_in_the_notebook():
    frame = pd.DataFrame({"e": [1.0, 2.0], "pi": [10.0, 20.0]})
    assert evaluate("e + pi", frame).tolist() == [11.0, 22.0]
    assert to_numpy_source("e + pi", ["e", "pi"]) == "(df['e'] + df['pi'])"
    assert to_numpy_source("e + pi", ["pi"]) == "(np.e + df['pi'])"


def test_a_formula_is_one_line_without_comments():
    for formula in ("(q1 # ignore the rest\n)", "(q1\n+ 1)"):
        with pytest.raises(FormulaError, match="one line"):
            evaluate(formula, FRAME)


def test_referenced_columns():
    assert referenced_columns("q2 * t + q2", ["q1", "q2", "t"]) == ["q2", "t"]


def _evaluate_in_a_child(formula: str, frame_code: str, seconds: float = 10.0):
    """(message, elapsed) of evaluating ``formula`` in a child process with 2 GB of memory at most.

    A child, because a formula that builds a 10**800000000 integer or a gigabyte string would
    freeze or exhaust this test process; the child is killed after ``seconds``.
    """
    import resource
    import subprocess
    import sys
    import time
    code = ("import sys, pandas as pd\n"
            "from panel_apps.expressions import FormulaError, evaluate\n"
            f"frame = {frame_code}\n"
            "try:\n    evaluate(sys.argv[1], frame)\n    print('no error')\n"
            "except FormulaError as exc:\n    print(exc)\n")

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", code, formula], capture_output=True, text=True,
                              timeout=seconds, preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"evaluating {formula!r} did not finish within {seconds} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip(), time.monotonic() - start


@pytest.mark.parametrize("formula, message", [
    ("9**9**9", "too large"),
    ("7**7**8", "too large"),
    ("q1 + 9**9**9", "too large"),
    ("q1 * exp(1000)", "too large"),
    ("q1 + 1 / 0", "divides by zero"),
    ("name * 100000000", "holds text"),
    ("(name + name) * 10**8", "holds text"),
])
def test_formulas_that_would_freeze_or_exhaust_the_server_give_a_sentence_quickly(formula, message):
    frame = "pd.DataFrame({'q1': [1.0] * 10, 'name': ['abc'] * 10})"
    text, elapsed = _evaluate_in_a_child(formula, frame)
    assert message in text, text
    assert elapsed < 8


def test_out_of_memory_while_computing_gives_a_sentence(monkeypatch):
    from panel_apps import expressions

    def exhausted(*args):
        raise MemoryError()

    monkeypatch.setitem(expressions.FUNCTIONS, "sqrt", exhausted)
    with pytest.raises(FormulaError, match="more memory"):
        evaluate("sqrt(q1)", FRAME)


def test_a_formula_gives_one_number_per_row():
    assert evaluate("1 < 2", FRAME).tolist() == [1.0, 1.0, 1.0]
    assert evaluate("2 ** -1", FRAME).tolist() == [0.5] * 3  # numbers are float64, never Python integers

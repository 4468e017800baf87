"""A student saves a plot configuration and gets exactly the same plot back."""
import pytest

from panel_apps.spec import PlotSpec


def test_saved_configuration_round_trips_through_json():
    spec = PlotSpec(kind="hist2d", logx=True, title="Junction 3", bins=64, mode="rasterized",
                    root="/home/alice", path="data/run.txt", reader={"delimiter": None, "header": False})
    spec.set_columns(["t", "q1", "q3"])
    spec.param.update(x="q3", y="t", color_by="q1", derived={"r": "sqrt(q1**2)"},
                      filters=[{"column": "t", "min": 0.5, "max": None}], rename={"col1": "t"})
    again = PlotSpec.from_json(spec.to_json())
    assert again.to_dict() == spec.to_dict()
    assert (again.x, again.y, again.color_by, again.filters[0]["min"]) == ("q3", "t", "q1", 0.5)


def test_column_choices_follow_the_file():
    spec = PlotSpec()
    spec.set_columns(["a", "b"])
    assert (spec.x, spec.y) == ("a", "b")
    spec.set_columns(["b", "c"])
    assert (spec.x, spec.y) == ("b", "b")  # kept y; x no longer exists
    assert spec.param.color_by.objects == ["", "b", "c"]


@pytest.mark.parametrize("text", ["not json", "[]", '{"kind": "scatter"}', '{"version": 99}'])
def test_a_foreign_file_is_refused_readably(text):
    with pytest.raises(ValueError, match="saved plot configuration"):
        PlotSpec.from_json(text)


def test_an_invalid_value_is_refused_readably():
    with pytest.raises(ValueError, match="invalid value"):
        PlotSpec.from_json('{"version": 1, "kind": "pie"}')


def test_used_columns_include_filters_and_colour():
    spec = PlotSpec(kind="scatter")
    spec.set_columns(["a", "b", "c"])
    spec.param.update(color_by="c", filters=[{"column": "a", "min": 0, "max": 1}])
    assert spec.used_columns() == ["a", "b", "c"]
    spec.kind = "hist"
    assert spec.used_columns() == ["a"]


# ----------------------------------------------------------------- one set of rules for widgets and saved files
GOOD = {"version": 1, "root": "/home/alice", "path": "run.txt", "x": "t", "y": "q1"}


@pytest.mark.parametrize("change, field", [
    ({"derived": {"r\nimport os\n#": "t"}}, "derived"),
    ({"derived": {"1r": "t"}}, "derived"),
    ({"derived": {"lambda": "t"}}, "derived"),
    ({"derived": {"r": "__import__('os')"}}, "derived"),
    ({"derived": {"r": "(t # a comment\n)"}}, "derived"),
    ({"rename": {"q1": "charge one"}}, "rename"),
    ({"rename": {"q1": "c", "q2": "c"}}, "rename"),
    ({"rename": {"q1": 3}}, "rename"),
    ({"filters": [{"column": "t", "min": "0); import os; (", "max": None}]}, "filters"),
    ({"filters": [{"column": "t", "min": True, "max": None}]}, "filters"),
    ({"filters": [{"column": "t", "min": float("inf"), "max": None}]}, "filters"),
    ({"filters": [{"min": 1.0}]}, "filters"),
    ({"filters": [{"column": "t", "min": 1.0, "max": None, "code": "x"}]}, "filters"),
    ({"reader": {"delimiter": "x"}}, "delimiter"),
    ({"reader": {"header": "yes"}}, "header"),
    ({"reader": {"names": ["t", 1]}}, "names"),
    ({"reader": {"comment": "##"}}, "comment"),
    ({"reader": {"skiprows": "0); import os; ("}}, "skiprows"),
    ({"reader": {"skiprows": -1}}, "skiprows"),
    ({"reader": {"dataset": ["/a"]}}, "dataset"),
    ({"reader": {"tree": 3}}, "tree"),
    ({"reader": {"engine": "python"}}, "engine"),
    ({"x": {"a": 1}}, "'x'"),
])
def test_a_saved_configuration_with_a_bad_value_is_refused_naming_the_field(change, field):
    import json
    with pytest.raises(ValueError, match="invalid value") as err:
        PlotSpec.from_json(json.dumps({**GOOD, **change}))
    assert field in str(err.value)


def test_a_configuration_is_checked_against_the_columns_of_the_file():
    from panel_apps.spec import FileColumns, SpecError
    columns = FileColumns(names=("t", "q1", "q2", "label"), numeric=("t", "q1", "q2"))
    spec = PlotSpec.from_json('{"version": 1, "rename": {"q1": "charge"}, "derived": {"r": "charge * 2"},'
                              ' "filters": [{"column": "r", "min": 0, "max": null}], "x": "t", "y": "r"}')
    spec.check(columns)  # fine: every name exists once the file is known
    assert spec.available_columns(columns) == ["t", "charge", "q2", "r"]
    bad = [({"derived": {"r": "q1 * 2"}}, "Unknown column 'q1'"),  # renamed away
           ({"derived": {"r": "label * 100000000"}}, "holds text"),
           ({"derived": {"q2": "t"}}, "already a column"),
           ({"derived": {"r": "s", "s": "t"}}, "Unknown column 's'"),  # only earlier columns
           ({"filters": [{"column": "energy", "min": 1, "max": None}]}, "no column 'energy'"),
           ({"rename": {"nope": "x"}}, "no column 'nope'"),
           ({"rename": {"q1": "q2"}}, "same name"),
           ({"y": "energy"}, "no column 'energy'")]
    for change, message in bad:
        candidate = PlotSpec.from_json(spec.to_json())
        candidate.param.update(**change)
        with pytest.raises(SpecError, match=message):
            candidate.check(columns)

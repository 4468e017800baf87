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

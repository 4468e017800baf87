"""A researcher fills a job form: fields appear, follow each other and explain every mistake;
what the page shows while typing is exactly what is checked at submit."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from jobforms.loader import load_app, load_apps
from jobforms.request import JobRequest, JobRequestError

SHIPPED = Path(__file__).resolve().parent.parent / "jobforms" / "apps"
LIMITS = {"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1},
          "opennebula": {"cores": 8, "memory_mb": 16000, "walltime_s": 86400, "nodes": 4}}


@pytest.fixture(scope="module")
def ljj():
    return load_apps(SHIPPED, LIMITS)[0]["ljj"]


def make_app(tmp_path: Path, **descriptor):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "app.yaml").write_text(yaml.safe_dump({"name": "Custom", "command": ["prog"], **descriptor}))
    return load_app(folder, LIMITS)


def fields(app, values=None) -> dict:
    return {f.name: f for f in app.form(values)}


def errors_at_submit(app, values) -> dict:
    with pytest.raises(JobRequestError) as caught:
        app.validate(values)
    return caught.value.errors


# --------------------------------------------------------------------------- the form
def test_a_fresh_form_lists_parameters_then_resources_then_the_destination(ljj):
    form = ljj.form()
    assert [f.name for f in form] == ["length", "boundary", "field", "fluxons", "velocity", "alpha", "gamma",
                                      "points", "time_step", "steps", "record_every", "backend", "nodes",
                                      "cores", "memory_mb", "walltime_s", "destination"]
    length = form[0]
    assert (length.kind, length.label, length.units, length.default, length.value) == \
        ("float", "Junction length", "λ_J", 20.0, 20.0)
    assert (length.min, length.max, length.error, length.visible, length.enabled) == (2, 100, None, True, True)
    boundary = form[1]
    assert [(c.value, c.label) for c in boundary.choices] == [
        ("annular", "Annular (a ring: fluxons stay trapped)"), ("open", "Inline (open ends, external field)")]
    assert {f.group for f in form[11:16]} == {"resources"} and form[-1].group == "results"
    assert all(f.error is None for f in form)


def test_the_field_option_appears_only_for_the_open_boundary(ljj):
    assert fields(ljj)["field"].visible is False
    assert fields(ljj, {"boundary": "open"})["field"].visible is True
    assert fields(ljj, {"boundary": "open", "field": 9})["field"].error == "External magnetic field h must be at most 5."


def test_a_hidden_field_is_not_required_and_its_value_is_dropped(ljj):
    request = ljj.validate({"boundary": "annular", "field": "not even a number"})
    assert "field" not in request.parameters
    assert ljj.validate({"boundary": "open", "field": 1.5}).parameters["field"] == 1.5


def test_the_grid_is_limited_by_the_length_and_a_default_follows_the_limit(ljj):
    short = fields(ljj, {"length": 5})
    assert (short["points"].max, short["points"].value) == (200, 200)  # 40 per λ_J; the default 400 followed
    assert ljj.check({"length": 5, "points": 300}) == {"points": "Grid points must be at most 200."}
    assert ljj.check({"length": 5, "points": 150}) == {}


def test_the_velocity_is_disabled_without_fluxons_and_keeps_its_default(ljj):
    form = fields(ljj, {"fluxons": 0, "velocity": 0.7})
    assert form["velocity"].enabled is False and form["velocity"].value == 0.0
    assert ljj.validate({"fluxons": 0, "velocity": 0.7}).parameters["velocity"] == 0.0


def test_a_cross_field_check_shows_its_message_on_its_field(ljj):
    errors = ljj.check({"time_step": 0.1})  # 0.9 * 20 / 400 = 0.045
    assert list(errors) == ["time_step"]
    assert errors["time_step"].startswith("The time step must be at most 0.9 × the grid spacing")
    assert ljj.check({"time_step": 0.1, "points": 100}) == {}  # coarser grid: fine


def test_a_check_reading_a_wrong_field_waits_for_it(ljj):
    errors = ljj.check({"length": "long", "time_step": 0.4})
    assert set(errors) == {"length"}  # the step check cannot be judged without a length


def test_every_error_is_a_sentence_naming_its_field(ljj):
    errors = errors_at_submit(ljj, {"length": "x", "boundary": "square", "fluxons": 2.5, "alpha": float("nan"),
                                    "points": "1e3", "steps": True, "record_every": None, "backend": "k8s",
                                    "cores": 99, "destination": "http://example.org/"})
    assert errors == {
        "length": "Junction length must be a number, like 0.5 or 1e-3.",
        "boundary": "Geometry must be one of: Annular (a ring: fluxons stay trapped), "
                    "Inline (open ends, external field).",
        "fluxons": "Fluxons at the start must be a whole number.",
        "alpha": "Damping α must be a finite number.",
        "points": "Grid points must be a whole number.",
        "steps": "Time steps must be a whole number.",
        "record_every": "Record every is required.",
        "backend": "Backend must be one of: slurm, opennebula.",
        "cores": "Cores per VM / node must be at most 1.",  # the app is one process
        "destination": "'http://example.org/' is not a result URL this app accepts: empty for a new folder "
                       "in your home, ftp://server/path, sftp://[user@]server/path, file:///path.",
    }


def test_the_live_check_does_not_call_untyped_fields_missing_but_submit_does(tmp_path):
    app = make_app(tmp_path, parameters=[{"name": "title", "kind": "string"}, {"name": "n", "kind": "integer"}])
    assert app.check({}) == {}
    assert app.check({"title": ""}) == {"title": "Title is required."}
    assert errors_at_submit(app, {"title": "run 1"}) == {"n": "N is required."}


def test_live_and_submit_checks_agree_on_complete_input(ljj):
    for values in ({"length": 5, "points": 300}, {"time_step": 0.1}, {"boundary": "open", "field": -7},
                   {"cores": 3, "backend": "slurm"}, {"destination": "sftp://u:pw@host/x"}):
        complete = {f.name: f.value for f in ljj.form()} | values
        assert ljj.check(complete) == errors_at_submit(ljj, complete)


def test_unknown_fields_are_refused_by_name(ljj):
    assert ljj.check({"lenght": 3}) == {"lenght": "There is no field 'lenght' in this form."}


def test_choices_follow_another_parameter(tmp_path):
    app = make_app(tmp_path, parameters=[
        {"name": "solver", "kind": "choice", "choices": ["explicit", "implicit"], "default": "explicit"},
        {"name": "order", "kind": "choice", "choices": [1, 2, 4], "default": 4,
         "choices_from": {"parameter": "solver", "choices": {"implicit": [1, 2]}}},
    ])
    assert [c.value for c in fields(app)["order"].choices] == [1, 2, 4]
    implicit = fields(app, {"solver": "implicit"})["order"]
    assert [c.value for c in implicit.choices] == [1, 2] and implicit.value == 1  # the default followed
    assert app.check({"solver": "implicit", "order": 4}) == {
        "order": "Order cannot be '4' here; choose one of: 1, 2."}


def test_a_range_can_follow_a_choice_through_a_mapping(tmp_path):
    app = make_app(tmp_path, parameters=[
        {"name": "precision", "kind": "choice", "choices": ["draft", "paper"], "default": "draft"},
        {"name": "samples", "kind": "integer", "default": 100, "min": 10, "step": 10,
         "min_from": {"parameter": "precision", "values": {"paper": 1000}}},
    ])
    assert fields(app, {"precision": "paper"})["samples"].value == 1000
    assert app.check({"precision": "paper", "samples": 500}) == {"samples": "Samples must be at least 1000."}
    assert app.check({"samples": 15}) == {"samples": "Samples must be 10 plus a multiple of 10."}


# --------------------------------------------------------------------------- resources and results
def test_resource_bounds_follow_the_chosen_backend(ljj):
    assert ljj.check({"backend": "opennebula", "memory_mb": 4096}) == {}
    assert ljj.check({"backend": "slurm", "memory_mb": 4096}) == {
        "memory_mb": "Memory per VM / node must be at most 4000 MB."}
    form = fields(ljj, {"backend": "opennebula"})
    assert (form["walltime_s"].max, form["memory_mb"].max) == (86400, 4096)  # site limit vs app limit


@pytest.mark.parametrize("url, error", [
    ("", None),
    ("sftp://alice@storage.example.org:2222/results/run1", None),
    ("ftp://10.93.221.96/pub", None),
    ("file:///data/shared/results", None),
    ("sftp://alice:secret@host/x", "Do not put a password in the result URL"),
    ("file://relative/path", "A file:// URL names a folder on this system"),
    ("sftp:///no-host", "needs a server name"),
    ("ftp://host/../../etc", "must not contain '..'"),
    ("sftp://host/a b", "must not contain spaces"),
    ("s3://bucket/key", "is not a result URL this app accepts"),
])
def test_results_go_home_by_default_or_to_a_checked_url(ljj, url, error):
    found = ljj.check({"destination": url}).get("destination")
    assert (found is None) if error is None else (error in found), found
    if error is None:
        destination = ljj.validate({"destination": url}).destination
        assert destination.url == (url or None)


# --------------------------------------------------------------------------- the request
def test_a_request_is_plain_json_and_checks_back_to_itself(ljj):
    request = ljj.validate({"boundary": "open", "field": 0.25, "length": "12.5", "points": "300",
                            "backend": "opennebula", "memory_mb": 2048, "destination": "sftp://h/r"})
    assert request.parameters["length"] == 12.5 and request.parameters["points"] == 300
    assert request.resources.model_dump() == {"backend": "opennebula", "nodes": 1, "cores": 1,
                                              "memory_mb": 2048, "walltime_s": 600}
    again = JobRequest.model_validate_json(request.model_dump_json())
    assert again == request and type(again.parameters["velocity"]) is float
    assert ljj.validate(ljj.form_values(request)) == request


def test_the_submit_model_is_the_same_check_for_the_rest_api(ljj):
    with pytest.raises(ValidationError) as caught:
        ljj.model.model_validate({"length": 5, "points": 300, "time_step": 0.2})
    # the step check waits: it reads the points, which are wrong
    assert {e["loc"]: e["msg"] for e in caught.value.errors()} == {("points",): "Grid points must be at most 200."}
    checked = ljj.model.model_validate({"boundary": "open"}).model_dump(by_alias=True)
    assert checked["field"] == 0.0 and checked["backend"] == "slurm"


def test_parameter_names_that_are_python_or_pydantic_words_work(tmp_path):
    app = make_app(tmp_path, parameters=[{"name": n, "kind": "integer", "default": 1}
                                         for n in ("json", "copy", "model_config", "_private", "validate")])
    request = app.validate({"json": 2, "_private": 3})
    assert request.parameters == {"json": 2, "copy": 1, "model_config": 1, "_private": 3, "validate": 1}
    assert list(app.request_schema()["properties"])[:5] == ["json", "copy", "model_config", "_private", "validate"]


def test_the_request_schema_describes_the_submit_body(ljj):
    schema = ljj.request_schema()
    props = schema["properties"]
    assert props["length"]["title"] == "Junction length" and props["length"]["maximum"] == 100
    assert props["boundary"]["enum"] == ["annular", "open"]
    assert props["backend"]["enum"] == ["slurm", "opennebula"]
    assert props["memory_mb"]["maximum"] == 4096 and "(in MB)" in props["memory_mb"]["description"]
    assert schema["additionalProperties"] is False
    assert "required" not in schema  # every field has a default


def test_a_request_for_another_app_or_no_longer_valid_is_not_run(ljj, tmp_path):
    request = ljj.validate({})
    other = load_apps(SHIPPED, LIMITS)[0]["hello-test"]
    with pytest.raises(ValueError, match="for the app 'ljj', not 'hello-test'"):
        other.command(request, workdir=tmp_path)
    tampered = request.model_copy(update={"parameters": {**request.parameters, "points": 10**6}})
    with pytest.raises(JobRequestError) as caught:
        ljj.command(tampered, workdir=tmp_path)
    assert caught.value.errors == {"points": "Grid points must be at most 800."}

"""Admins describe apps in app.yaml; broken ones are reported by file, field and reason, and
the others keep working. The published JSON Schema is the one enforced, and it is up to date."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobforms.descriptor_schema import SCHEMA_FILE, descriptor_schema, published_schema
from jobforms.loader import DescriptorError, load_app, load_apps

SHIPPED = Path(__file__).resolve().parent.parent / "jobforms" / "apps"
LIMITS = {"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1},
          "opennebula": {"cores": 8, "memory_mb": 16000, "walltime_s": 86400, "nodes": 4}}


def write_app(root: Path, app_id: str, descriptor: dict | str, files: dict[str, str] | None = None) -> Path:
    folder = root / app_id
    folder.mkdir(parents=True)
    text = descriptor if isinstance(descriptor, str) else yaml.safe_dump(descriptor, allow_unicode=True)
    (folder / "app.yaml").write_text(text, encoding="utf-8")
    for name, content in (files or {}).items():
        (folder / name).write_text(content)
    return folder


def minimal(**changes) -> dict:
    return {"name": "Minimal", "command": ["true"], **changes}


def problems_of(tmp_path: Path, descriptor, files=None) -> list[tuple[str, str]]:
    write_app(tmp_path, "app", descriptor, files)
    apps, problems = load_apps(tmp_path, LIMITS)
    assert "app" not in apps
    assert all(p.file == tmp_path / "app" / "app.yaml" for p in problems)
    return [(p.field, p.message) for p in problems]


# --------------------------------------------------------------------------- the shipped apps
def test_the_shipped_apps_load_without_problems():
    apps, problems = load_apps(SHIPPED, LIMITS)
    assert problems == []
    assert set(apps) == {"hello-test", "ljj"}
    hello, ljj = apps["hello-test"], apps["ljj"]
    assert (hello.name, hello.category, hello.icon) == ("Hello test", "Testing", "👋")
    assert ljj.name == "Long Josephson junctions simulation" and ljj.icon is None
    assert ljj.icon_path == SHIPPED / "ljj" / "icon.svg" and ljj.icon_path.is_file()
    assert ljj.outputs == ["ljj.dat"] and ljj.backends == ["slurm", "opennebula"]


def test_the_published_schema_is_up_to_date_and_a_valid_schema():
    assert published_schema() == descriptor_schema(), \
        "jobforms/schema/app.schema.json is stale: run `python -m jobforms.descriptor_schema`"
    jsonschema.Draft202012Validator.check_schema(published_schema())
    for descriptor in SHIPPED.glob("*/app.yaml"):
        jsonschema.validate(yaml.safe_load(descriptor.read_text()), published_schema())
    assert json.loads(SCHEMA_FILE.read_text())["$schema"].startswith("https://json-schema.org/")


# --------------------------------------------------------------------------- broken descriptors
def test_a_broken_app_is_reported_and_the_other_apps_keep_working(tmp_path):
    write_app(tmp_path, "good", minimal())
    write_app(tmp_path, "bad", minimal(parameters=[{"name": "n", "kind": "integer", "min": 1, "max": "ten"}]))
    apps, problems = load_apps(tmp_path, LIMITS)
    assert list(apps) == ["good"]
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.file, problem.field) == (tmp_path / "bad" / "app.yaml", "parameters[0].max")
    assert "'ten' is not of type integer" in problem.message
    assert str(problem).startswith(f"{tmp_path / 'bad' / 'app.yaml'}: parameters[0].max: ")


@pytest.mark.parametrize("descriptor, field, words", [
    (minimal(parameters=[{"name": "m", "kind": "flot"}]), "parameters[0].kind", "'flot' is not one of: integer"),
    (minimal(parameters=[{"name": "c", "kind": "choice", "choices": [True, False]}]), "parameters[0].choices[0]",
     "put it in quotes"),
    (minimal(colour="red"), "", "Additional properties are not allowed ('colour' was unexpected)"),
    ({"name": "No command"}, "", "'command' is a required property"),
    (minimal(parameters=[{"name": "f", "kind": "float", "max_from": {"parameter": "q"}}]),
     "parameters[0].max_from", "'values' is a required property"),
    (minimal(parameters=[{"name": "n", "kind": "integer", "default": 50, "max": 10}]), "parameters[0].default",
     "N must be at most 10"),
    (minimal(parameters=[{"name": "n", "kind": "integer", "min": 5, "max": 1}]), "parameters[0].max",
     "smaller than min"),
    (minimal(parameters=[{"name": "cores", "kind": "integer"}]), "parameters[0].name", "'cores' is reserved"),
    (minimal(parameters=[{"name": "a", "kind": "boolean"}, {"name": "a", "kind": "float"}]), "parameters[1].name",
     "two parameters named 'a'"),
    (minimal(parameters=[{"name": "s", "kind": "string", "regex": "("}]), "parameters[0].regex",
     "Not a valid regular expression"),
    (minimal(parameters=[{"name": "x", "kind": "float", "visible_if": "__import__('os').system('id')"}]),
     "parameters[0].visible_if", "not an allowed function"),
    (minimal(parameters=[{"name": "x", "kind": "float", "visible_if": "y.real > 0"}]),
     "parameters[0].visible_if", "Attribute access"),
    (minimal(parameters=[{"name": "x", "kind": "float", "visible_if": "x > 1"}]), "parameters[0].visible_if",
     "'x' depends on itself: x -> x"),
    (minimal(parameters=[{"name": "b", "kind": "choice", "choices": ["open", "ring"]},
                         {"name": "h", "kind": "float", "visible_if": "b == 1"}]),
     "parameters[1].visible_if", "can never be equal"),
    (minimal(parameters=[{"name": "g", "kind": "float", "max_from": "g2 * 2"}]), "parameters[0].max_from",
     "Unknown parameter 'g2'"),
    (minimal(parameters=[{"name": "b", "kind": "choice", "choices": ["a", "b"]},
                         {"name": "c", "kind": "choice", "choices": ["x", "y"],
                          "choices_from": {"parameter": "b", "choices": {"a": ["x", "z"]}}}]),
     "parameters[1].choices_from.choices.a[1]", "'z' is not one of the parameter's choices"),
    (minimal(parameters=[{"name": "n", "kind": "integer", "enabled_if": "True == False"}]),
     "parameters[0].default", "can be disabled needs a default"),
    (minimal(checks=[{"rule": "n > 1", "message": "Too small."}]), "checks[0].rule", "Unknown parameter 'n'"),
    (minimal(command=["{who}"], parameters=[{"name": "who", "kind": "string"}]), "command[0]",
     "the program to run is fixed"),
    (minimal(command=["prog", "--n={n}"], parameters=[{"name": "n", "kind": "integer", "required": False}]),
     "command[1]", "can be hidden or empty; put it in a group"),
    (minimal(command=["prog", "{a...}"], parameters=[{"name": "a", "kind": "string"}]), "command[1]",
     "only a multi-choice parameter can spread"),
    (minimal(command=["prog", "{nope}"]), "command[1]", "there is no parameter 'nope'"),
    (minimal(command=["prog", "a}b"]), "command[1]", "a lone '}'"),
    (minimal(command=["prog", {"when": "1 +", "args": ["-v"]}]), "command[1].when", "not a valid expression"),
    (minimal(command=["{app_dir}/missing.py"]), "command[0]", "There is no file 'missing.py'"),
    (minimal(icon="logo.png"), "icon", "There is no file 'logo.png'"),
    (minimal(icon="../../etc/passwd"), "icon", "must not contain '..'"),
    (minimal(outputs=["/etc/*"]), "outputs[0]", "must be relative"),
    (minimal(resources={"cores": {"min": 4, "max": 2}}), "resources.cores.max", "smaller than min"),
    (minimal(resources={"backends": ["htcondor"]}), "resources.backends",
     "No backend on this site can run this app: 'htcondor' is not offered"),
    (minimal(resources={"cores": {"min": 16}}), "resources",
     "'slurm' offers at most 2 cores, the app needs at least 16"),
    ("name: [unclosed\n", "", "not valid YAML (line 2, column 1)"),
    ("- just\n- a list\n", "", "must be a mapping"),
    ("name: &n Alias\ncategory: *n\ncommand: [x]\n", "", "anchors and aliases"),
])
def test_a_broken_descriptor_names_the_field_and_what_is_wrong(tmp_path, descriptor, field, words):
    found = problems_of(tmp_path, descriptor)
    assert any(f == field and words in message for f, message in found), found


def test_every_problem_of_a_descriptor_is_listed_at_once(tmp_path):
    found = problems_of(tmp_path, minimal(parameters=[
        {"name": "n", "kind": "integer", "default": 50, "max": 10},
        {"name": "x", "kind": "float", "visible_if": "y > 1"},
        {"name": "y", "kind": "float", "visible_if": "x > 1"},
    ], checks=[{"rule": "n > nope", "message": "m"}]))
    fields = [f for f, _ in found]
    assert fields == ["parameters[0].default", "parameters[1].visible_if", "parameters[2].visible_if",
                      "checks[0].rule"]


def test_folders_that_are_not_apps(tmp_path):
    write_app(tmp_path, "Bad Name", minimal())
    (tmp_path / "no-descriptor").mkdir()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "README.md").write_text("apps live here")
    apps, problems = load_apps(tmp_path, LIMITS)
    assert apps == {}
    assert sorted((p.file.name, p.message.split(":")[0]) for p in problems) == [
        ("Bad Name", "'Bad Name' is not an app id"), ("app.yaml", "The app's folder has no app.yaml.")]


def test_load_app_raises_with_every_problem(tmp_path):
    folder = write_app(tmp_path, "x", minimal(parameters=[{"name": "a", "kind": "nope"}]))
    with pytest.raises(DescriptorError) as caught:
        load_app(folder, LIMITS)
    assert caught.value.problems[0].field == "parameters[0].kind"


def test_malformed_site_limits_are_the_sites_error_not_an_apps(tmp_path):
    write_app(tmp_path, "ok", minimal())
    with pytest.raises(ValueError, match="Backend limits of 'slurm': cores"):
        load_apps(tmp_path, {"slurm": {"cores": "many"}})
    with pytest.raises(ValueError, match="gpus"):
        load_apps(tmp_path, {"slurm": {"gpus": 1}})


def test_yaml_keys_of_mappings_may_be_unquoted_numbers_and_booleans(tmp_path):
    write_app(tmp_path, "app", minimal(parameters=[
        {"name": "grid", "kind": "choice", "choices": [64, 128]},
        {"name": "fine", "kind": "boolean"},
        {"name": "steps", "kind": "integer", "default": 10, "max_from": {"parameter": "grid", "values": {64: 100}}},
        {"name": "method", "kind": "choice", "choices": ["a", "b"], "default": "a",
         "choices_from": {"parameter": "fine", "choices": {True: ["b"]}}},
    ]))
    apps, problems = load_apps(tmp_path, LIMITS)
    assert problems == []
    app = apps["app"]
    assert app.check({"grid": 64, "steps": 101}) == {"steps": "Steps must be at most 100."}
    assert app.check({"grid": "128", "steps": 101}) == {}
    assert app.check({"fine": True, "method": "a"}) == {"method": "Method cannot be 'a' here; choose one of: b."}

"""The program's argv: one list element per value, never a shell; numbers exact."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobforms.loader import load_app, load_apps

SHIPPED = Path(__file__).resolve().parent.parent / "jobforms" / "apps"
LIMITS = {"slurm": {"cores": 4, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1}}


@pytest.fixture(scope="module")
def apps():
    return load_apps(SHIPPED, LIMITS)[0]


def make_app(tmp_path: Path, command: list, parameters: list, **more):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "app.yaml").write_text(yaml.safe_dump({"name": "Custom", "command": command,
                                                     "parameters": parameters, **more}))
    return load_app(folder, LIMITS)


def test_the_ljj_command_for_the_default_form(apps):
    ljj = apps["ljj"]
    argv = ljj.command(ljj.validate({}), workdir="/scratch/job-7", app_dir="/opt/apps/ljj")
    assert argv == ["python3", "/opt/apps/ljj/ljj.py", "--length=20.0", "--boundary=annular", "--fluxons=1",
                    "--velocity=0.0", "--alpha=0.1", "--gamma=0.2", "--points=400", "--time-step=0.02",
                    "--steps=20000", "--record-every=50"]
    open_ends = ljj.command(ljj.validate({"boundary": "open", "field": -1.25}), workdir="/w")
    assert "--field=-1.25" in open_ends and open_ends[1] == str(SHIPPED / "ljj" / "ljj.py")


def test_shell_metacharacters_stay_inside_their_one_argument(apps):
    hello = apps["hello-test"]
    nasty = "world; rm -rf ~ && echo $(id) `id` | tee /x > /y 'q' \"qq\"\nnext line"
    argv = hello.command(hello.validate({"who": nasty}), workdir="/w")
    assert argv[3] == "--who=" + nasty
    assert sum(nasty in arg for arg in argv) == 1


def test_a_multi_choice_spreads_only_through_its_list_form_and_a_flag_through_its_group(apps):
    hello = apps["hello-test"]
    argv = hello.command(hello.validate({"extras": ["python", "date"], "shout": True}), workdir="/w")
    assert argv[-3:] == ["--also=date", "--also=python", "--shout"]  # in the form's order
    quiet = hello.command(hello.validate({"extras": []}), workdir="/w")
    assert not any(a.startswith("--also") or a == "--shout" for a in quiet)


def test_a_file_parameter_gets_the_path_the_service_resolved(apps):
    hello = apps["hello-test"]
    request = hello.validate({"use_file": True, "input": "data/run 1.txt"})
    assert hello.file_parameters(request) == {"input": "data/run 1.txt"}
    argv = hello.command(request, workdir="/w", files={"input": "/home/alice/data/run 1.txt"})
    assert argv[-2:] == ["--input", "/home/alice/data/run 1.txt"]
    with pytest.raises(ValueError, match="resolved path of the file parameter 'input'"):
        hello.command(request, workdir="/w")
    with pytest.raises(ValueError, match="without NUL"):
        hello.command(request, workdir="/w", files={"input": "/a\x00b"})


@pytest.mark.parametrize("path, words", [("../secret.txt", "must not contain '..'"), ("/etc/passwd.txt", "relative"),
                                         ("a\x00b.txt", "control character"), ("notes.pdf", "must be a .txt")])
def test_a_file_path_is_checked_for_its_shape_only(apps, path, words):
    errors = apps["hello-test"].check({"use_file": True, "input": path})
    assert words in errors["input"] and errors["input"].startswith("File to echo")


@pytest.mark.parametrize("value", [0.1, 1e-05, 1 / 3, 2.5e300, -0.0, 123456789.125, 5e-324])
def test_floats_reach_the_program_exactly(tmp_path, value):
    app = make_app(tmp_path, ["prog", "{x}"], [{"name": "x", "kind": "float"}])
    (arg,) = app.command(app.validate({"x": value}), workdir="/w")[1:]
    assert float(arg) == value and arg == repr(value)


def test_templates_say_how_booleans_and_lists_are_written(tmp_path):
    app = make_app(tmp_path, ["prog", "--periodic={p}", "--obs={obs}", "{{literal}}", "-t{cores}", "{workdir}/out"],
                   [{"name": "p", "kind": "boolean", "true_text": "yes", "false_text": "no"},
                    {"name": "obs", "kind": "multi-choice", "choices": ["E", "V", "N"], "separator": ":"}])
    argv = app.command(app.validate({"p": "on", "obs": ["N", "E"], "cores": 2}), workdir="/scratch/j")
    assert argv == ["prog", "--periodic=yes", "--obs=E:N", "{literal}", "-t2", "/scratch/j/out"]


def test_an_optional_value_lives_in_a_group_left_out_without_it(tmp_path):
    app = make_app(tmp_path, ["prog", {"args": ["--seed", "{seed}"]}, {"when": "n > 2", "args": ["--big"]}],
                   [{"name": "seed", "kind": "integer", "required": False},
                    {"name": "n", "kind": "integer", "default": 1}])
    assert app.command(app.validate({}), workdir="/w") == ["prog"]
    assert app.command(app.validate({"seed": "-7", "n": 3}), workdir="/w") == ["prog", "--seed", "-7", "--big"]


def test_a_text_starting_with_a_dash_is_refused_unless_the_admin_allows_it(tmp_path):
    app = make_app(tmp_path, ["prog", "{title}"], [{"name": "title", "kind": "string"}])
    assert app.check({"title": "--help"}) == {
        "title": "Title must not start with '-' (the program would read it as an option)."}

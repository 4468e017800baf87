"""Fuzzing job forms with hypothesis: whatever a user sends and whatever an admin describes,
the forms never crash (only field errors or descriptor problems), and the argv holds exactly the
arguments the template and the values call for, each value inside exactly one of them."""
from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from jobforms.loader import DescriptorError, load_app, load_apps
from jobforms.request import JobRequest, JobRequestError

SHIPPED = Path(__file__).resolve().parent.parent / "jobforms" / "apps"
LIMITS = {"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1},
          "opennebula": {"cores": 8, "memory_mb": 16000, "walltime_s": 86400, "nodes": 4}}
# JOBFORMS_FUZZ_EXAMPLES=5000 for a longer hunt than the suite's
FUZZ = settings(max_examples=int(os.environ.get("JOBFORMS_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

NASTY = st.sampled_from([
    "; rm -rf / #", "$(id)", "`id`", "a'b\"c", "a b", "\n", "line1\nline2", "\r\n", "\t", "--help", "-x", "-1",
    "{who}", "{{", "}", "%s%n", "\\", "\\\\'", "\x00", "a\x00b", "ü", "Привет", "😀", "\u202e", "\u200b", "' OR 1=1 --",
    "*", "~", "../..", "/etc/passwd", "&&", "||", "|", ">", "<", "!", "1e309", "nan", "inf", "-0", "0x10", "1_000",
    " 12 ", "true", "on", "", " ",
])
TEXT = st.one_of(NASTY, st.text(max_size=40), st.text(alphabet=string.printable, max_size=40),
                 st.integers(min_value=1000, max_value=150_000).map(lambda n: "x" * n))
SCALAR = st.one_of(TEXT, st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True))
JUNK = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)


@pytest.fixture(scope="module")
def shipped():
    return load_apps(SHIPPED, LIMITS)[0]


def typed(field):
    """Values of the field's own kind: in range, just outside, numbers typed as text."""
    options = []
    if field.kind in ("integer", "float"):
        low = field.min if field.min is not None else -1000
        high = field.max if field.max is not None else max(low, 0) + 1000
        low, high = min(low, high), max(low, high)  # a narrowed range may leave nothing (min > max)
        options += [st.integers(int(low) - 1, int(high) + 1), st.integers(int(low), int(high)).map(str)]
        if field.kind == "float":
            options.append(st.floats(float(low) - 1, float(high) + 1, allow_nan=False).map(lambda x: round(x, 3)))
    if field.kind in ("choice", "multi-choice") and field.choices:
        values = [c.value for c in field.choices]
        options.append(st.sampled_from(values) if field.kind == "choice"
                       else st.lists(st.sampled_from(values), max_size=len(values), unique=True))
    if field.kind == "boolean":
        options.append(st.booleans())
    if field.kind == "string":
        options += [st.text(alphabet=string.ascii_letters + " _;$()", min_size=1, max_size=20), NASTY]
    if field.kind == "file":
        options += [st.sampled_from(["data/run 1.dat", "notes.txt", "a;b.txt", "x.csv"]), TEXT]
    if field.kind == "destination":
        options.append(st.sampled_from(["", "sftp://h/x", "ftp://u@h:21/p", "file:///d", "sftp://u:p@h/",
                                        "http://h/", "file://h/x"]))
    return st.one_of(*options) if options else JUNK


@st.composite
def form_values(draw, app, complete: bool = False, junk_one_in: int = 3):
    """Values for some (or all) fields: of the field's kind mostly, junk one time in
    ``junk_one_in``, sometimes with a field the form does not have."""
    values = {}
    for field in app.form():
        # hypothesis favours 0 and the ends of a range: a middle value stands for "rarely"
        send = st.booleans() if field.group == "parameters" else st.integers(0, 4).map(lambda n: n == 2)
        if complete or draw(send):
            junk = draw(st.integers(0, junk_one_in - 1)) == junk_one_in // 2
            values[field.name] = draw(JUNK if junk else typed(field))
    if not complete and draw(st.integers(0, 2 * junk_one_in)) == junk_one_in:
        values[draw(TEXT)] = draw(JUNK)  # a field the form does not have
    return values


def check_never_crashes(app, values) -> JobRequest | None:
    """check/form/validate answer with field errors only; a request round-trips exactly."""
    live = app.check(values)
    assert isinstance(live, dict) and all(isinstance(k, str) and isinstance(m, str) and m for k, m in live.items())
    app.form(values)
    try:
        request = app.validate(values)
    except JobRequestError as exc:
        assert exc.errors and all(isinstance(k, str) and isinstance(m, str) and m for k, m in exc.errors.items())
        assert set(live) <= set(exc.errors)  # submit adds only fields not typed yet
        assert all(exc.errors[k] == m for k, m in live.items())
        return None
    assert live == {}
    assert JobRequest.model_validate_json(request.model_dump_json()) == request
    assert app.validate(app.form_values(request)) == request
    return request


# --------------------------------------------------------------------------- the shipped apps
@FUZZ
@given(st.data())
def test_any_input_to_the_shipped_forms_gives_field_errors_or_a_request(shipped, data):
    for app in shipped.values():
        check_never_crashes(app, data.draw(form_values(app)))


@FUZZ
@given(st.data())
def test_live_and_submit_checks_agree_on_any_complete_input(shipped, data):
    for app in shipped.values():
        values = data.draw(form_values(app, complete=True))
        try:
            app.validate(values)
            submit = {}
        except JobRequestError as exc:
            submit = exc.errors
        assert app.check(values) == submit


@FUZZ
@given(greeting=TEXT, who=TEXT, extras=st.lists(st.sampled_from(["date", "host", "python"]), unique=True),
       shout=st.booleans(), path=TEXT)
def test_hello_values_each_land_in_exactly_one_argument(shipped, greeting, who, extras, shout, path):
    hello = shipped["hello-test"]
    values = {"greeting": greeting, "who": who, "extras": extras, "shout": shout, "use_file": True, "input": path}
    try:
        request = hello.validate(values)
    except JobRequestError as exc:
        assert set(exc.errors) <= {"greeting", "who", "input"}
        return
    argv = hello.command(request, workdir="/w", files={"input": "/resolved/" + path})
    order = ["date", "host", "python"]
    assert argv == ["python3", f"{SHIPPED / 'hello-test'}/hello.py", f"--greeting={greeting}", f"--who={who}",
                    "--repeat=1", "--pause=0.0", "--language=en",
                    *[f"--also={e}" for e in sorted(extras, key=order.index)],
                    *(["--shout"] if shout else []), "--input", "/resolved/" + path]


# --------------------------------------------------------------------------- descriptor-driven forms
KINDS = ["integer", "float", "string", "boolean", "choice", "multi-choice", "file"]
WORDS = st.sampled_from(["red", "green", "blue", "open", "ring", "a b", "x;y", "-z", "ü", "1", "$(id)"])
REGEXES = ["[a-z]+", "[A-Za-z0-9 _;$()-]{1,30}", ".*", "(?s).*", "[^/]+"]


def _condition(draw, earlier: list[dict]) -> str | None:
    """A type-correct rule over an earlier parameter (rules never form a cycle this way)."""
    if not earlier or not draw(st.booleans()):
        return None
    other = draw(st.sampled_from(earlier))
    kind, name = other["kind"], other["name"]
    if kind == "boolean":
        return draw(st.sampled_from([name, f"not {name}"]))
    if kind in ("integer", "float"):
        return f"{name} > {draw(st.integers(-5, 5))}"
    if kind == "multi-choice":
        return f"{_literal(draw(st.sampled_from(other['choices'])))} in {name}"
    if kind == "choice":
        return f"{name} == {_literal(draw(st.sampled_from(other['choices'])))}"
    return f"len({name}) < {draw(st.integers(0, 10))}"


def _literal(value) -> str:
    return repr(value)


@st.composite
def parameter(draw, name: str, earlier: list[dict]) -> dict:
    kind = draw(st.sampled_from(KINDS))
    p: dict = {"name": name, "kind": kind, "label": draw(st.sampled_from([name.upper(), "Ünïcode ü", "a'b"]))}
    if kind in ("integer", "float"):
        number = st.integers(-50, 50) if kind == "integer" else st.floats(-50, 50).map(lambda x: round(x, 2))
        low, high = sorted([draw(number), draw(number)])
        if draw(st.booleans()):
            p["min"] = low
        if draw(st.booleans()):
            p["max"] = high
        if kind == "integer" and draw(st.booleans()):
            p["step"] = draw(st.integers(1, 5))
            p.setdefault("min", low)
            if "max" in p:
                p["max"] = p["min"] + ((p["max"] - p["min"]) // p["step"]) * p["step"]
        if draw(st.booleans()):
            default = p.get("min", p.get("max", 0))
            p["default"] = default if kind == "integer" else float(default)
        numbers = [e["name"] for e in earlier if e["kind"] in ("integer", "float")]
        if numbers and draw(st.booleans()):
            p[draw(st.sampled_from(["min_from", "max_from"]))] = f"{draw(st.sampled_from(numbers))} * 2 + 1"
    elif kind == "string":
        p["regex"] = draw(st.sampled_from(REGEXES))
        p["max_length"] = draw(st.integers(1, 200))
        if draw(st.booleans()):
            p["default"] = "abc"[: p["max_length"]]
        p["allow_leading_dash"] = draw(st.booleans())
    elif kind == "boolean":
        if draw(st.booleans()):
            p["true_text"], p["false_text"] = draw(NASTY.filter(lambda t: "\x00" not in t)), "no"
    elif kind in ("choice", "multi-choice"):
        numbers = draw(st.booleans())
        pool = st.integers(-5, 50) if numbers else WORDS
        p["choices"] = draw(st.lists(pool, min_size=1, max_size=5, unique=True))
        if draw(st.booleans()):
            p["default"] = (p["choices"][0] if kind == "choice"
                            else draw(st.lists(st.sampled_from(p["choices"]), unique=True)))
        if kind == "multi-choice" and draw(st.booleans()):
            p["separator"] = draw(st.sampled_from([",", " ", ":", ";", "\n"]))
        controllers = [e for e in earlier if e["kind"] == "choice"]
        if controllers and draw(st.booleans()):
            other = draw(st.sampled_from(controllers))
            key = draw(st.sampled_from(other["choices"]))
            subset = draw(st.lists(st.sampled_from(p["choices"]), min_size=1, unique=True))
            p["choices_from"] = {"parameter": other["name"], "choices": {key: subset}}
    else:
        if draw(st.booleans()):
            p["extensions"] = [".dat", ".txt"]
    p["required"] = draw(st.booleans())
    visible = _condition(draw, earlier)
    if visible:
        p["visible_if"] = visible
    enabled = _condition(draw, earlier)
    if enabled and ("default" in p or kind in ("boolean", "multi-choice") or not p["required"]):
        p["enabled_if"] = enabled
    return p


@st.composite
def descriptors(draw) -> dict:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "json", "copy", "_x", "model_y"]),
                          min_size=1, max_size=6, unique=True))
    parameters: list[dict] = []
    for name in names:
        parameters.append(draw(parameter(name, list(parameters))))
    command: list = ["prog"]
    for p in parameters:
        spread = p["kind"] == "multi-choice" and draw(st.booleans())
        arg = f"--{p['name']}={{{p['name']}{'...' if spread else ''}}}"
        command.append({"args": [arg]} if draw(st.booleans()) or _may_lack_value(p) else arg)
    checks = []
    numbers = [p["name"] for p in parameters if p["kind"] in ("integer", "float")]
    if numbers and draw(st.booleans()):
        checks.append({"rule": f"{numbers[0]} != 3", "message": "Not three, please."})
    return {"name": "Fuzzed app", "parameters": parameters, "checks": checks, "command": command}


def _may_lack_value(p: dict) -> bool:
    return "visible_if" in p or (p["kind"] not in ("boolean", "multi-choice")
                                 and (not p["required"] or ("enabled_if" in p and "default" not in p)))


def _expected_argv(descriptor: dict, request: JobRequest) -> list[str]:
    """The argv as the descriptor says, computed independently of jobforms.command."""
    argv = ["prog"]
    for p, item in zip(descriptor["parameters"], descriptor["command"][1:]):
        template = item["args"][0] if isinstance(item, dict) else item
        if p["name"] not in request.parameters:
            continue
        value = request.parameters[p["name"]]
        prefix = f"--{p['name']}="
        if template.endswith("...}"):
            argv += [prefix + _text(v) for v in value]
        elif p["kind"] == "multi-choice":
            argv.append(prefix + p.get("separator", ",").join(_text(v) for v in value))
        elif p["kind"] == "boolean":
            argv.append(prefix + (p.get("true_text", "true") if value else p.get("false_text", "false")))
        elif p["kind"] == "file":
            argv.append(prefix + f"/resolved/{p['name']}")
        else:
            argv.append(prefix + _text(value))
    return argv


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _load(descriptor: dict):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "fuzzed"
        folder.mkdir()
        (folder / "app.yaml").write_text(yaml.safe_dump(descriptor, allow_unicode=True), encoding="utf-8")
        return load_app(folder, LIMITS)


@FUZZ
@given(descriptors(), st.data())
def test_generated_forms_never_crash_and_their_argv_is_exactly_the_templates(descriptor, data):
    note(yaml.safe_dump(descriptor, allow_unicode=True))
    try:
        app = _load(descriptor)
    except DescriptorError as exc:
        # the generator keeps to the rules except for defaults that a narrowed range refuses
        assert all(p.field.endswith(".default") for p in exc.problems), exc.problems
        event("descriptor refused")
        assume(False)
    for _ in range(3):
        values = data.draw(form_values(app, junk_one_in=12))
        request = check_never_crashes(app, values)
        event("values accepted" if request else "values refused")
        if request is None:
            continue
        files = {name: f"/resolved/{name}" for name in app.file_parameters(request)}
        argv = app.command(request, workdir="/w", files=files)
        assert argv == _expected_argv(descriptor, request)


@FUZZ
@given(descriptors(), st.data())
def test_a_mutated_descriptor_is_reported_never_crashes(descriptor, data):
    """Break one thing anywhere in a descriptor: the loader answers with problems that name the
    file and a place, or loads the app; it never raises anything else."""
    container, key = descriptor, data.draw(st.sampled_from(sorted(descriptor)))
    for _ in range(data.draw(st.integers(0, 3))):
        inner = container[key]
        if isinstance(inner, dict) and inner:
            container, key = inner, data.draw(st.sampled_from(sorted(inner)))
        elif isinstance(inner, list) and inner:
            container, key = inner, data.draw(st.integers(0, len(inner) - 1))
        else:
            break
    container[key] = data.draw(JUNK)
    try:
        app = _load(descriptor)
    except DescriptorError as exc:
        assert exc.problems and all(p.file.name == "app.yaml" and isinstance(p.field, str) and p.message
                                    for p in exc.problems)
        return
    check_never_crashes(app, data.draw(form_values(app)))

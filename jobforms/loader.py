"""Loading the apps an admin has put in ``<apps_dir>/<app-id>/app.yaml``.

:func:`load_apps` reads every app folder and returns the apps that can be offered and the
problems of those that cannot, each naming the file, the place inside it as a JSON path
(``parameters[2].max``) and what is wrong. A broken descriptor never stops the others: the Jobs
page lists the good apps, and the admin sees the problems (in the service log and the page's
admin view). Each descriptor is checked in three steps: YAML, the published JSON Schema
(:mod:`jobforms.descriptor_schema`, so the file admins validate against is the one enforced), then
the rules a schema cannot express (:meth:`~jobforms.descriptor.AppDescriptor.problems`), and last
against the site's backend limits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import jsonschema
import yaml
from pydantic import ValidationError

from .app import App
from .descriptor import AppDescriptor
from .descriptor_schema import published_schema
from .resources import offers, parse_limits

DESCRIPTOR_FILE = "app.yaml"
APP_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_DESCRIPTOR_BYTES = 1_000_000
_YAML_BOOL_HINT = (" (YAML reads an unquoted yes/no/on/off/true/false as a yes/no value: "
                   "put it in quotes to mean the text)")


@dataclass(frozen=True)
class Problem:
    """Why (part of) an app cannot be offered: the file, the place in it, and what is wrong."""

    file: Path
    field: str  # a JSON path inside the file, e.g. "parameters[2].max"; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


class DescriptorError(ValueError):
    """An app folder that cannot make an app; :attr:`problems` says why, one by one."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_apps(apps_dir: str | Path, limits: Mapping[str, Mapping[str, int]]) -> tuple[dict[str, App], list[Problem]]:
    """Every app in ``apps_dir`` (by id, in folder order) and the problems of those that failed.

    ``limits`` is what each backend the site offers allows one job at most, e.g.
    ``{"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1}}``. Malformed
    limits are the site's configuration error: :class:`ValueError`, not a problem of an app.
    Folders whose name starts with ``.`` or ``_`` and plain files are not apps.
    """
    checked = parse_limits(limits)
    apps_dir = Path(apps_dir)
    if not apps_dir.is_dir():
        return {}, [Problem(apps_dir, "", "The apps folder does not exist.")]
    apps, problems = {}, []
    for folder in sorted(apps_dir.iterdir()):
        if folder.name.startswith((".", "_")) or not folder.is_dir():
            continue
        try:
            apps[folder.name] = load_app(folder, checked)
        except DescriptorError as exc:
            problems += exc.problems
    return apps, problems


def load_app(folder: str | Path, limits: Mapping) -> App:
    """The app in ``folder``; :class:`DescriptorError` listing every problem found."""
    folder = Path(folder).absolute()  # the command's {app_dir} must not depend on the service's cwd
    file = folder / DESCRIPTOR_FILE
    limits = parse_limits(limits)

    def fail(found: Iterable[tuple[str, str]]):
        raise DescriptorError([Problem(file, where, message) for where, message in found])

    if not APP_ID_PATTERN.match(folder.name):
        raise DescriptorError([Problem(folder, "", f"'{folder.name}' is not an app id: use lower-case letters, "
                                                   f"digits, '-' and '_' (the folder's name is the app's id).")])
    data = _read_yaml(file)
    fail_now = list(schema_problems(data))
    if fail_now:
        fail(fail_now)
    try:
        descriptor = AppDescriptor.model_validate(data)
    except ValidationError as exc:
        fail(model_problems(exc, data))
    found = descriptor.problems(folder)
    if found:
        fail(found)
    usable, reasons = offers(descriptor.resources, limits)
    if not usable:
        fail([("resources.backends" if descriptor.resources.backends is not None else "resources",
               "No backend on this site can run this app: " + ("; ".join(reasons) or "the site offers none") + ".")])
    try:
        return App(folder.name, folder, descriptor, usable)
    except Exception as exc:  # a bug here must not take the other apps down; it is shown as a problem
        fail([("", f"The app could not be prepared ({type(exc).__name__}: {exc}).")])


def _read_yaml(file: Path):
    def fail(message: str):
        raise DescriptorError([Problem(file, "", message)])

    try:
        raw = file.read_bytes()[: MAX_DESCRIPTOR_BYTES + 1]
    except FileNotFoundError:
        fail(f"The app's folder has no {DESCRIPTOR_FILE}.")
    except OSError as exc:
        fail(f"{DESCRIPTOR_FILE} cannot be read: {exc.strerror}.")
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        fail(f"{DESCRIPTOR_FILE} is larger than {MAX_DESCRIPTOR_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            fail("YAML anchors and aliases (&name, *name) are not supported in app descriptors; write values out.")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        fail(f"{DESCRIPTOR_FILE} is not UTF-8 text.")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        fail(f"{DESCRIPTOR_FILE} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}.")
    if not isinstance(data, dict):
        fail(f"{DESCRIPTOR_FILE} must be a mapping (name: ..., parameters: ..., command: ...).")
    return data


# ----------------------------------------------------------------------------- schema problems
@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = published_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(data) -> Iterable[tuple[str, str]]:
    """(JSON path, message) for every place ``data`` breaks the published schema."""
    for error in sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        for path, message, instance, validator in _leaves(error):
            if isinstance(instance, bool) and validator in ("type", "const", "enum", "anyOf", "oneOf"):
                message += _YAML_BOOL_HINT
            yield json_path(path), message


def _leaves(error) -> list[tuple]:
    """(path, message, value, schema keyword) of the errors that say what is wrong: inside a
    oneOf/anyOf, those of the one branch the value was evidently meant for (the parameter kind it
    names, the non-null member of an optional), else one sentence for the whole choice."""
    plain = [(error.absolute_path, error.message, error.instance, error.validator)]
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return plain
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [errors for errors in branches.values() if not any(_rejected_at_the_door(e, error) for e in errors)]
    if len(meant) == 1:
        return [leaf for sub in meant[0] for leaf in _leaves(sub)]
    door = [e for errors in branches.values() for e in errors if _rejected_at_the_door(e, error)]
    consts = [e for e in door if e.validator == "const"]
    if consts and len(consts) == len(branches) and len({tuple(e.absolute_path) for e in consts}) == 1:
        # every branch wants another value at the same key: the parameter's kind
        message = f"{consts[0].instance!r} is not one of: {', '.join(str(e.validator_value) for e in consts)}."
        return [(consts[0].absolute_path, message, consts[0].instance, "const")]
    types = [e.validator_value for e in door if e.validator == "type" and e.validator_value != "null"]
    if types and len(door) == len(error.context):
        message = f"{error.instance!r} is not of type {' or '.join(dict.fromkeys(map(str, types)))}."
        return [(error.absolute_path, message, error.instance, error.validator)]
    return plain


def _rejected_at_the_door(sub, parent) -> bool:
    depth = len(sub.absolute_path) - len(parent.absolute_path)
    if sub.validator == "type" and depth == 0:
        return True
    return sub.validator in ("const", "enum") and depth == 1


def json_path(parts: Iterable) -> str:
    """``("parameters", 2, "max")`` as ``parameters[2].max``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def model_problems(exc: ValidationError, data) -> list[tuple[str, str]]:
    """pydantic's errors as (JSON path, message), its locations walked through ``data`` so that
    the names pydantic adds for union members (``parameters.2.integer.max``) drop out."""
    found = []
    for error in exc.errors():
        node, path = data, []
        for part in error["loc"]:
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                path.append(part)
            elif not isinstance(node, (dict, list)) or isinstance(part, int):
                break
            elif error["type"] == "missing" and part == error["loc"][-1]:
                path.append(part)
        message = error["msg"].removeprefix("Value error, ")
        found.append((json_path(path), message))
    return found

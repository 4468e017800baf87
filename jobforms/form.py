"""The form as the Jobs page draws it: a plain list of field descriptions for the current values.

Every description comes from the same evaluation as the checks (:mod:`jobforms.rules`), so a
field is shown, enabled, bounded and offered choices exactly as the values will be checked.
Descriptions are pydantic models, so the page (or a REST client) gets them as JSON as they are.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

from .destination import DestinationKind
from .parameters import FileParameter, StringParameter, ChoiceParameterBase, NumberParameterBase, choice_key
from .resources import RESOURCES
from .rules import Evaluation, FieldState, Rules

FieldKind = Literal["integer", "float", "string", "boolean", "choice", "multi-choice", "file", "destination"]


class FormChoice(BaseModel):
    """One choice as offered: the value to send back and the label to show."""

    model_config = ConfigDict(frozen=True)

    value: Any
    label: str


class FormField(BaseModel):
    """One field of a job form, for the current values."""

    model_config = ConfigDict(frozen=True)

    name: str
    group: Literal["parameters", "resources", "results"]
    kind: FieldKind
    label: str
    help: str = ""
    units: str = ""
    default: Any = None
    value: Any = None  # the checked value now; None when it has none or it is wrong
    error: Optional[str] = None
    required: bool = False
    visible: bool = True
    enabled: bool = True
    min: Optional[float | int] = None
    max: Optional[float | int] = None
    step: Optional[float | int] = None
    choices: Optional[list[FormChoice]] = None
    min_selected: Optional[int] = None
    max_selected: Optional[int] = None
    max_length: Optional[int] = None
    regex: Optional[str] = None
    extensions: Optional[list[str]] = None


def describe(rules: Rules, evaluation: Evaluation) -> list[FormField]:
    """Every field in the form's order: parameters, then resources, then the result destination.
    Errors are those of a live check: a required field not sent yet has none."""
    errors = evaluation.errors(partial=True)
    fields = [_parameter(p, evaluation.fields[p.name], errors) for p in rules.descriptor.parameters]
    fields.append(_backend(rules, evaluation.fields["backend"], errors))
    backend = rules.offers.get(evaluation.value("backend")) or rules.offers[rules.backend_field.default]
    fields += [_resource(rules, name, evaluation.fields[name], errors, backend.bounds[name].default)
               for name in RESOURCES]
    fields.append(_destination(rules, evaluation.fields["destination"], errors))
    return fields


def _parameter(p, state: FieldState, errors: dict) -> FormField:
    extra: dict[str, Any] = {}
    if isinstance(p, NumberParameterBase):
        extra.update(min=state.low, max=state.high, step=p.step)
    if isinstance(p, ChoiceParameterBase):
        offered = state.choices if state.choices is not None else [c.value for c in p.options]
        keys = {choice_key(v) for v in offered}
        extra["choices"] = [FormChoice(value=c.value, label=c.shown) for c in p.options if choice_key(c.value) in keys]
        if p.kind == "multi-choice":
            extra.update(min_selected=p.min_selected, max_selected=p.max_selected)
    if isinstance(p, StringParameter):
        extra.update(max_length=p.max_length, regex=p.regex)
    if isinstance(p, FileParameter):
        extra["extensions"] = list(p.extensions)
    return FormField(name=p.name, group="parameters", kind=p.kind, label=p.shown_name, help=p.help, units=p.units,
                     default=p.default, value=None if state.error else state.value, error=errors.get(p.name),
                     required=p.required and state.visible and p.kind != "boolean",  # a box always has a value
                     visible=state.visible, enabled=state.enabled, **extra)


def _backend(rules: Rules, state: FieldState, errors: dict) -> FormField:
    spec = rules.backend_field
    return FormField(name="backend", group="resources", kind="choice", label=spec.shown_name, help=spec.help,
                     default=spec.default, value=state.value, error=errors.get("backend"), required=True,
                     choices=[FormChoice(value=b, label=b) for b in rules.offers])


def _resource(rules: Rules, name: str, state: FieldState, errors: dict, default: int) -> FormField:
    spec = rules.resource_fields[name]
    return FormField(name=name, group="resources", kind="integer", label=spec.shown_name, units=spec.units,
                     default=default, value=None if state.error else state.value,
                     error=errors.get(name), required=True, min=state.low, max=state.high, step=1)


def _destination(rules: Rules, state: FieldState, errors: dict) -> FormField:
    allowed = rules.descriptor.destinations
    examples = [f"{k.value}://…" if k is not DestinationKind.FILE else "file:///…"
                for k in allowed if k is not DestinationKind.HOME]
    home = DestinationKind.HOME in allowed
    help_text = ("Leave empty for a new folder in your home" if home else "Where the results are uploaded") + \
                (f"; or a URL: {', '.join(examples)}." if examples else ".")
    return FormField(name="destination", group="results", kind="destination", label="Results go to",
                     help=help_text, default=None, value=None if state.value is None else state.value.url,
                     error=errors.get("destination"), required=not home,
                     choices=[FormChoice(value=k.value, label=k.value) for k in allowed])

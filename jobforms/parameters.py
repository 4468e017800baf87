"""The kinds of parameters an app's form can ask for, as written in ``app.yaml``.

Each kind is a pydantic model (one member of the :data:`Parameter` union, told apart by
``kind``) that knows three things about its values: how to read what a user typed
(:meth:`convert`: ``"12"`` for an integer, ``"on"`` for a yes/no; a :class:`ValueError` with a
sentence naming the field otherwise), whether a value keeps to the limits in force
(:meth:`limit_problem`, with the limits the rules computed for the current form), and how a value
is written as (part of) one program argument (:meth:`as_text`). The rules between parameters live
in :mod:`jobforms.rules`; the checks that need the other parameters in :mod:`jobforms.descriptor`.
"""
from __future__ import annotations

import keyword
import math
import re
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from .expressions import ValueType
from .paths import relative_path_problem

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# names the form uses for itself (resources, results) and the command template's own placeholders
RESERVED_NAMES = frozenset({"backend", "nodes", "cores", "memory_mb", "walltime_s", "destination",
                            "app_dir", "workdir"})
INT64 = 2**63 - 1
HARD_MAX_LENGTH = 100_000  # one program argument must stay well below Linux's 128 KiB per argument
MAX_NUMBER_TEXT = 100

# strict: YAML reads an unquoted yes/no/on/off as true/false, which must not become 1/0 here
ChoiceValue = Union[StrictStr, StrictInt, StrictFloat]
Number = Union[StrictInt, StrictFloat]


def choice_key(value) -> str:
    """The text that stands for ``value`` in mappings (``choices_from``, bound mappings) and in
    choice matching: ``true``/``false`` for yes/no, ``64`` for both 64 and 64.0."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _keys_as_text(mapping):
    # YAML gives {64: ..., true: ...} for unquoted keys; the mapping is looked up by choice_key
    return {choice_key(k): v for k, v in mapping.items()} if isinstance(mapping, dict) else mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    """One offered choice: its value (what the program gets) and the label the form shows."""

    value: ChoiceValue
    label: Optional[str] = None

    @property
    def shown(self) -> str:
        return self.label or choice_key(self.value)


class BoundMapping(_Strict):
    """A bound that follows another parameter: ``{parameter: precision, values: {low: 100}}``.
    A value of the other parameter that the mapping does not list leaves the static bound."""

    parameter: str
    values: dict[str, Number]

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, mapping):
        return _keys_as_text(mapping)


class ChoicesMapping(_Strict):
    """The choices offered follow another parameter's value:
    ``{parameter: boundary, choices: {open: [a, b], periodic: [c]}}``; unlisted values offer all."""

    parameter: str
    choices: dict[str, list[ChoiceValue]]

    @field_validator("choices", mode="before")
    @classmethod
    def _text_keys(cls, mapping):
        return _keys_as_text(mapping)


# ----------------------------------------------------------------------------- the common part
class _Base(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Identifier used in rules and the command template.")
    label: Optional[str] = Field(None, description="What the form shows (default: the name).")
    help: str = Field("", description="A sentence or two shown under the field.")
    units: str = Field("", description="Units shown next to the value, e.g. 'ns' or 'λ_J'.")
    required: bool = Field(True, description="A visible field must have a value at submit.")
    visible_if: Optional[str] = Field(None, description="Expression: the field is shown (and used) only when true.")
    enabled_if: Optional[str] = Field(None, description="Expression: the field can be changed only when true; "
                                                        "otherwise it keeps its default.")

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        if keyword.iskeyword(name) or name in RESERVED_NAMES:
            raise ValueError(f"'{name}' is reserved; reserved names: "
                             f"{', '.join(sorted(RESERVED_NAMES))} and Python keywords")
        return name

    @property
    def shown_name(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def static_problems(self) -> list[tuple[str, str]]:
        """Problems this parameter has on its own: (field inside it, message)."""
        problems = []
        if self.default is not None:
            try:
                value = self.convert(self.default)
                problem = self.limit_problem(value, *self.static_limits())
            except ValueError as exc:
                problem = str(exc)
            if problem:
                problems.append(("default", f"The default does not fit: {problem}"))
        return problems

    def static_limits(self) -> tuple:
        return (None, None, None)

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        return None

    def empty(self, raw) -> bool:
        """Whether ``raw`` means "no value" (nothing typed)."""
        return raw is None or (isinstance(raw, str) and not raw.strip())


# ----------------------------------------------------------------------------- numbers
class NumberParameterBase(_Base):
    """What integers and floats share: a range, a step, and bounds that follow other parameters."""

    min: Optional[Number] = Field(None, description="Smallest value allowed.")
    max: Optional[Number] = Field(None, description="Largest value allowed.")
    step: Optional[Number] = Field(None, gt=0, description="Values go from min (or 0) in steps of this size.")
    min_from: Union[str, BoundMapping, None] = Field(
        None, description="A smaller range that follows other parameters: an expression or a mapping.")
    max_from: Union[str, BoundMapping, None] = Field(
        None, description="A smaller range that follows other parameters: an expression or a mapping.")

    value_type: ClassVar[ValueType] = ValueType.NUMBER

    def static_limits(self) -> tuple:
        return (self.min, self.max, None)

    def static_problems(self) -> list[tuple[str, str]]:
        problems = []
        for bound in ("min", "max", "step"):
            value = getattr(self, bound)
            if value is not None:
                try:
                    self.convert(value)
                except ValueError as exc:
                    problems.append((bound, str(exc)))
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(("max", f"max ({self.max}) is smaller than min ({self.min})."))
        return problems + super().static_problems()

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        if low is not None and value < low:
            return f"{self.shown_name} must be at least {_number_text(low)}{self._unit_text()}."
        if high is not None and value > high:
            return f"{self.shown_name} must be at most {_number_text(high)}{self._unit_text()}."
        if self.step is not None and not self._on_step(value):
            base = self.min if self.min is not None else 0
            return f"{self.shown_name} must be {_number_text(base)} plus a multiple of {_number_text(self.step)}."
        return None

    def tighten(self, low, high) -> tuple:
        """The static range narrowed by the computed bounds ``low``/``high`` (None: no bound)."""
        lows = [b for b in (self.min, low) if b is not None]
        highs = [b for b in (self.max, high) if b is not None]
        return self._inward(max(lows) if lows else None, min(highs) if highs else None)

    def _inward(self, low, high) -> tuple:
        return low, high

    def snap(self, value, low, high):
        """The allowed value nearest to ``value`` within ``low``..``high``, on the step grid
        (a default that a narrowed range no longer allows follows the range)."""
        if high is not None and value > high:
            value = high
        if low is not None and value < low:
            value = low
        if self.step is not None:
            base = self.min if self.min is not None else 0
            value = base + math.floor((value - base) / self.step + 1e-9) * self.step
            if low is not None and value < low:
                value += self.step
        return self._number(value)

    def _unit_text(self) -> str:
        return f" {self.units}" if self.units else ""

    def as_text(self, value) -> str:
        return _number_text(value)


def _number_text(value) -> str:
    """A number as the program reads it back exactly: ``12``, ``10.0``, ``0.1``, ``1e-05``
    (``repr`` of a float is the shortest text that reads back as the same float)."""
    return repr(float(value)) if isinstance(value, float) else str(int(value))


class IntegerParameter(NumberParameterBase):
    """A whole number (a count of grid points, steps, seeds)."""

    kind: Literal["integer"]
    default: Optional[StrictInt] = None
    min: Optional[StrictInt] = None
    max: Optional[StrictInt] = None
    step: Optional[StrictInt] = Field(None, gt=0)

    def convert(self, raw) -> int:
        value = raw
        if isinstance(raw, str):
            text = raw.strip()
            if len(text) > MAX_NUMBER_TEXT or not re.fullmatch(r"[+-]?[0-9]+", text):
                raise ValueError(f"{self.shown_name} must be a whole number.")
            value = int(text)
        elif isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
            value = int(raw)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.shown_name} must be a whole number.")
        if abs(value) > INT64:
            raise ValueError(f"{self.shown_name} is too large.")
        return value

    def _on_step(self, value) -> bool:
        return (value - (self.min or 0)) % self.step == 0

    def _inward(self, low, high) -> tuple:
        # a computed bound may be fractional (length * 20); whole numbers stay inside it
        return (None if low is None else math.ceil(low)), (None if high is None else math.floor(high))

    def _number(self, value):
        return int(value)


class FloatParameter(NumberParameterBase):
    """A real number (a length, a damping coefficient)."""

    kind: Literal["float"]
    default: Optional[Number] = None

    def convert(self, raw) -> float:
        value = raw
        if isinstance(raw, str):
            text = raw.strip()
            try:
                value = float(text) if len(text) <= MAX_NUMBER_TEXT and "_" not in text else None
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.shown_name} must be a number, like 0.5 or 1e-3.")
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{self.shown_name} is too large.") from None
        if not math.isfinite(value):
            raise ValueError(f"{self.shown_name} must be a finite number.")
        return value

    def _on_step(self, value) -> bool:
        steps = (value - (self.min or 0)) / self.step
        return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))

    def _number(self, value):
        return float(value)


# ----------------------------------------------------------------------------- text and yes/no
class StringParameter(_Base):
    """Free text (a title, a label): one program argument, whatever it holds."""

    kind: Literal["string"]
    default: Optional[StrictStr] = None
    regex: Optional[str] = Field(None, description="The whole text must match this Python regular expression.")
    min_length: int = Field(0, ge=0)
    max_length: int = Field(1000, ge=1, le=HARD_MAX_LENGTH)
    allow_leading_dash: bool = Field(False, description="Allow a text starting with '-' (a program may read it "
                                                        "as an option).")

    value_type: ClassVar[ValueType] = ValueType.TEXT

    def static_problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                return [("regex", f"Not a valid regular expression: {exc}.")]
        if self.min_length > self.max_length:
            problems.append(("max_length", "max_length is smaller than min_length."))
        return problems + super().static_problems()

    def convert(self, raw) -> str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"{self.shown_name} must be text.")
        text = raw if isinstance(raw, str) else choice_key(raw)
        if len(text) > self.max_length:
            raise ValueError(f"{self.shown_name} must be at most {self.max_length} characters long.")
        if "\x00" in text:
            raise ValueError(f"{self.shown_name} must not contain a NUL character.")
        return text

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        if len(value) < self.min_length:
            return f"{self.shown_name} must be at least {self.min_length} characters long."
        if value.startswith("-") and not self.allow_leading_dash:
            return f"{self.shown_name} must not start with '-' (the program would read it as an option)."
        if self.regex is not None and not re.fullmatch(self.regex, value):
            return f"{self.shown_name} does not have the expected form{self._form_hint()}."
        return None

    def _form_hint(self) -> str:
        return f" ({self.help})" if self.help else f" (it must match {self.regex})"

    def as_text(self, value) -> str:
        return value


class BooleanParameter(_Base):
    """Yes or no; the command template shows how the program is told (``true_text``/``false_text``
    in a placeholder, or a conditional group ``{when: flag, args: [--flag]}``)."""

    kind: Literal["boolean"]
    default: bool = False
    true_text: str = Field("true", description="What {name} becomes when the box is ticked.")
    false_text: str = Field("false", description="What {name} becomes when it is not.")

    value_type: ClassVar[ValueType] = ValueType.BOOL

    def convert(self, raw) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _YES_NO:
            return _YES_NO[raw.strip().lower()]
        raise ValueError(f"{self.shown_name} must be yes or no.")

    def empty(self, raw) -> bool:
        return raw is None

    def static_problems(self) -> list[tuple[str, str]]:
        bad = [f for f in ("true_text", "false_text") if "\x00" in getattr(self, f)]
        return [(f, "A NUL character cannot be part of a program argument.") for f in bad]

    def as_text(self, value) -> str:
        return self.true_text if value else self.false_text


_YES_NO = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


# ----------------------------------------------------------------------------- choices
class ChoiceParameterBase(_Base):
    """What single and multiple choices share: the offered values and ``choices_from``."""

    choices: list[Union[ChoiceValue, Choice]] = Field(min_length=1, description="Values offered, each a value "
                                                                                "or {value, label}.")
    choices_from: Optional[ChoicesMapping] = None

    @property
    def options(self) -> list[Choice]:
        return [c if isinstance(c, Choice) else Choice(value=c) for c in self.choices]

    @property
    def value_type(self) -> ValueType:
        return ValueType.NUMBER if all(_is_number(c.value) for c in self.options) else ValueType.TEXT

    def static_problems(self) -> list[tuple[str, str]]:
        problems = []
        keys = [choice_key(c.value) for c in self.options]
        if len(set(keys)) != len(keys):
            problems.append(("choices", "The same choice is listed twice."))
        kinds = {_is_number(c.value) for c in self.options}
        if len(kinds) > 1:
            problems.append(("choices", "Choices must be all numbers or all texts."))
        for i, c in enumerate(self.options):
            if isinstance(c.value, float) and not math.isfinite(c.value):
                problems.append((f"choices[{i}]", "A choice must be a finite number or a text."))
            elif isinstance(c.value, str) and "\x00" in c.value:
                problems.append((f"choices[{i}]", "A NUL character cannot be part of a program argument."))
        return problems + super().static_problems()

    def _match(self, raw) -> ChoiceValue:
        if not isinstance(raw, bool) and isinstance(raw, (str, int, float)):
            key = raw.strip() if isinstance(raw, str) else choice_key(raw)
            for c in self.options:
                if choice_key(c.value) == key:
                    return c.value
        shown = ", ".join(c.shown for c in self.options[:20])
        raise ValueError(f"{self.shown_name} must be one of: {shown}.")

    def _offered(self, choices) -> list[ChoiceValue]:
        return [c.value for c in self.options] if choices is None else list(choices)

    def as_text(self, value) -> str:
        return _number_text(value) if _is_number(value) else value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ChoiceParameter(ChoiceParameterBase):
    """One value out of a list (a boundary condition, a method)."""

    kind: Literal["choice"]
    default: Optional[ChoiceValue] = None

    def convert(self, raw) -> ChoiceValue:
        return self._match(raw)

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        offered = self._offered(choices)
        if choice_key(value) not in {choice_key(v) for v in offered}:
            labels = {choice_key(c.value): c.shown for c in self.options}
            return (f"{self.shown_name} cannot be '{labels.get(choice_key(value), value)}' here; choose one of: "
                    f"{', '.join(labels[choice_key(v)] for v in offered)}.")
        return None


class MultiChoiceParameter(ChoiceParameterBase):
    """Any number of values out of a list (observables to record, channels)."""

    kind: Literal["multi-choice"]
    default: list[ChoiceValue] = Field([], description="Chosen at first (default: none).")
    min_selected: int = Field(0, ge=0)
    max_selected: Optional[int] = Field(None, ge=1)
    separator: str = Field(",", description="Between values when {name} (not {name...}) puts them in one argument.")

    value_type: ClassVar[ValueType] = ValueType.LIST

    def static_problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.max_selected is not None and self.max_selected < self.min_selected:
            problems.append(("max_selected", "max_selected is smaller than min_selected."))
        if "\x00" in self.separator:
            problems.append(("separator", "A NUL character cannot be part of a program argument."))
        return problems + super().static_problems()

    def empty(self, raw) -> bool:
        return raw is None  # an empty list is a value: nothing chosen (refused when required)

    def convert(self, raw) -> list[ChoiceValue]:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or len(items) > len(self.options):
            raise ValueError(f"{self.shown_name} must be a list of choices.")
        chosen = [self._match(item) for item in items if not (isinstance(item, str) and not item.strip())]
        if len({choice_key(v) for v in chosen}) != len(chosen):
            raise ValueError(f"{self.shown_name} lists the same choice twice.")
        order = {choice_key(c.value): i for i, c in enumerate(self.options)}
        return sorted(chosen, key=lambda v: order[choice_key(v)])  # the form's order, whatever the input's

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        offered = {choice_key(v) for v in self._offered(choices)}
        labels = {choice_key(c.value): c.shown for c in self.options}
        refused = [labels[choice_key(v)] for v in value if choice_key(v) not in offered]
        if refused:
            return f"{self.shown_name} cannot include {', '.join(refused)} here."
        if len(value) < self.min_selected:
            return f"Choose at least {self.min_selected} for {self.shown_name}."
        if self.max_selected is not None and len(value) > self.max_selected:
            return f"Choose at most {self.max_selected} for {self.shown_name}."
        return None

    def joined(self, value) -> str:
        return self.separator.join(self.as_text(v) for v in value)


# ----------------------------------------------------------------------------- files
class FileParameter(_Base):
    """A file the user picks from their allowed folders, as a path relative to one of them.
    Only its shape is checked here; the job service resolves it and passes the real path to
    :meth:`jobforms.app.App.command`."""

    kind: Literal["file"]
    default: Optional[StrictStr] = None
    extensions: list[str] = Field([], description="Allowed endings, e.g. ['.dat', '.txt'] (empty: any).")

    value_type: ClassVar[ValueType] = ValueType.TEXT

    def convert(self, raw) -> str:
        problem = relative_path_problem(raw, self.shown_name)
        if problem:
            raise ValueError(problem)
        return raw.strip()

    def limit_problem(self, value, low=None, high=None, choices=None) -> str | None:
        if self.extensions and not value.lower().endswith(tuple(e.lower() for e in self.extensions)):
            return f"{self.shown_name} must be a {', '.join(self.extensions)} file."
        return None

    def as_text(self, value) -> str:
        return value


Parameter = Annotated[
    Union[IntegerParameter, FloatParameter, StringParameter, BooleanParameter, ChoiceParameter,
          MultiChoiceParameter, FileParameter],
    Field(discriminator="kind"),
]
KINDS = ("integer", "float", "string", "boolean", "choice", "multi-choice", "file")


def value_annotation(parameter) -> Any:
    """The Python type of the parameter's value in the app's request model, with static limits."""
    if isinstance(parameter, IntegerParameter):
        return Annotated[int, Field(ge=parameter.min, le=parameter.max)]
    if isinstance(parameter, FloatParameter):
        return Annotated[float, Field(ge=parameter.min, le=parameter.max, allow_inf_nan=False)]
    if isinstance(parameter, StringParameter):
        return Annotated[str, Field(max_length=parameter.max_length)]
    if isinstance(parameter, BooleanParameter):
        return bool
    if isinstance(parameter, ChoiceParameter):
        return Literal[tuple(c.value for c in parameter.options)]
    if isinstance(parameter, MultiChoiceParameter):
        return list[Literal[tuple(c.value for c in parameter.options)]]
    return str

"""One field of a generated job form: a widget chosen by the field's kind, its help line, and its
error shown right beside it.

A field is drawn from the service's description of it (:class:`jobforms.form.FormField` as JSON):
shown or hidden, enabled or not, its bounds and choices, its error. Numbers are typed as text and
checked by the service (its words: "must be a whole number", "at most 0.045"), so the browser
never clamps or rounds a value silently and the same rules decide here and at submit.
"""
from __future__ import annotations

from typing import Any, Callable

import panel as pn

from . import text

TEXT_KINDS = ("integer", "float", "string", "file", "destination")
NO_VALUE = object()  # what a field sends when it has nothing to send: the key is left out
ERROR_STYLE = {"color": "#b02a37", "font-size": "90%"}
HELP_STYLE = {"color": "#555", "font-size": "85%"}
PLACEHOLDERS = {"file": "a file in your home, e.g. data/run1.txt",
                "destination": "empty: a new folder in your home"}


class FieldView:
    """The widget of one form field and what is shown with it (``block`` is laid out)."""

    def __init__(self, field: dict, on_edit: Callable[[str], None]):
        self.name, self.kind = field["name"], field["kind"]
        self._on_edit = on_edit
        self._applying = False
        self._shown_text = None  # the text the page last put into a text field
        self.widget = self._make(field)
        self.help = pn.pane.HTML("", css_classes=["nh-field-help"], styles=HELP_STYLE,
                                 margin=(0, 10), sizing_mode="stretch_width")
        self.error = pn.pane.HTML("", css_classes=["nh-field-error"], styles=ERROR_STYLE,
                                  margin=(0, 10), visible=False, sizing_mode="stretch_width")
        # field names match [A-Za-z_][A-Za-z0-9_]* (checked when the app loads): a safe class
        self.block = pn.Column(self.widget, self.help, self.error, sizing_mode="stretch_width",
                               css_classes=["nh-field", f"nh-field-{self.name}"], margin=(0, 0, 4, 0))
        if self.kind in TEXT_KINDS:
            self.widget.param.watch(self._edited_text, ["value_input", "value"])
        else:
            self.widget.param.watch(self._edited, "value")

    # ---- widgets by kind ---------------------------------------------------------------------
    def _make(self, field: dict):
        label = field["label"] + (f" ({field['units']})" if field.get("units") else "")
        common = {"label": label, "sizing_mode": "stretch_width"}
        if self.kind == "boolean":
            return pn.widgets.Checkbox(value=bool(field.get("value")), **common)
        if self.kind == "choice":
            return pn.widgets.Select(options=self._options(field), value=field.get("value"), **common)
        if self.kind == "multi-choice":
            return pn.widgets.MultiChoice(options=self._options(field),
                                          value=list(field.get("value") or []), **common)
        return pn.widgets.TextInput(value=text.shown_value(field.get("value")),
                                    placeholder=PLACEHOLDERS.get(self.kind, ""),
                                    max_length=field.get("max_length") or 5000, **common)

    @staticmethod
    def _options(field: dict) -> dict:
        options = {str(c["label"]): c["value"] for c in field.get("choices") or []}
        if field["kind"] == "choice" and not field.get("required") and field.get("value") is None:
            options = {"—": None, **options}
        return options

    # ---- what the user did -------------------------------------------------------------------
    def _edited(self, event) -> None:
        if not self._applying:
            self._on_edit(self.name)

    def _edited_text(self, *events) -> None:
        if self._applying or all(e.new == self._shown_text for e in events):
            return
        self._shown_text = None
        self._on_edit(self.name)

    def value(self) -> Any:
        """What to send for this field (:data:`NO_VALUE`: leave it out)."""
        if self.kind in TEXT_KINDS:
            typed = self.widget.value_input if self.widget.value_input is not None else self.widget.value
            if typed == "" and self.kind != "string":
                return NO_VALUE
            return typed
        return self.widget.value

    def set_value(self, value: Any) -> None:
        """Show ``value`` (a loaded set, a cloned job, the service's value for an untouched field)."""
        self._applying = True
        try:
            if self.kind in TEXT_KINDS:
                shown = text.shown_value(value)
                self._shown_text = shown
                self.widget.param.update(value=shown, value_input=shown)
            elif self.kind == "boolean":
                self.widget.value = bool(value)
            elif self.kind == "multi-choice":
                self.widget.value = [v for v in (value or []) if v in self.widget.options.values()]
            elif value in self.widget.options.values():
                self.widget.value = value
        finally:
            self._applying = False

    # ---- what the service says about it ------------------------------------------------------
    def show(self, field: dict, *, touched: bool, error: str | None) -> None:
        """Draw the field as the service describes it for the current values."""
        self._applying = True
        try:
            if self.kind in ("choice", "multi-choice"):
                options = self._options(field)
                if options != self.widget.options:
                    self.widget.options = options
            self.widget.disabled = not field.get("enabled", True)
        finally:
            self._applying = False
        if not touched or not field.get("enabled", True):
            # the value the service works with: a default that follows the limits, or the
            # default a disabled field keeps whatever was typed
            shown = field.get("value") if field.get("value") is not None else field.get("default")
            if shown is not None or self.kind in TEXT_KINDS:
                self.set_value(shown)
        self.block.visible = bool(field.get("visible", True))
        self.help.object = self._help(field)
        self.help.visible = bool(self.help.object)
        self.show_error(error)

    def show_error(self, error: str | None) -> None:
        """The sentence beside the field (None: no error)."""
        self.error.object = text.paragraph("{}", error) if error else ""
        self.error.visible = bool(error)

    @staticmethod
    def _help(field: dict) -> str:
        parts = [field.get("help") or ""]
        low, high, units = field.get("min"), field.get("max"), field.get("units") or ""
        unit = f" {units}" if units else ""
        if low is not None and high is not None:
            parts.append(f"From {text.shown_value(low)} to {text.shown_value(high)}{unit}.")
        elif low is not None:
            parts.append(f"At least {text.shown_value(low)}{unit}.")
        elif high is not None:
            parts.append(f"At most {text.shown_value(high)}{unit}.")
        if field.get("kind") == "multi-choice" and field.get("max_selected"):
            parts.append(f"Choose at most {field['max_selected']}.")
        if field.get("kind") == "file" and field.get("extensions"):
            parts.append("Files ending " + ", ".join(field["extensions"]) + ".")
        shown = " ".join(p.strip() for p in parts if p and p.strip())
        return text.paragraph("{}", shown) if shown else ""

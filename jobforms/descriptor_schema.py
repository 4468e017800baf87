"""The published JSON Schema of ``app.yaml``, generated from :class:`~jobforms.descriptor.AppDescriptor`.

The file ``jobforms/schema/app.schema.json`` is what admins point their editor at (with the YAML
language server: ``# yaml-language-server: $schema=.../app.schema.json`` as the first line) and what
:func:`jobforms.loader.load_apps` checks every descriptor against. A test fails when the file and
the models drift apart; ``python -m jobforms.descriptor_schema`` writes it again.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .descriptor import AppDescriptor

SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "app.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def descriptor_schema() -> dict:
    """The JSON Schema of app descriptors, as the models say it today."""
    return {"$schema": DIALECT, **AppDescriptor.model_json_schema(mode="validation")}


def schema_text() -> str:
    return json.dumps(descriptor_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def published_schema() -> dict:
    """The schema as published in :data:`SCHEMA_FILE`."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    path.write_text(schema_text(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE)}")

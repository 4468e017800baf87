"""Building the template documents sent to OpenNebula, and refusing what must not go there.

CONTEXT and tags are readable by anyone who can see the VM (and by the VM itself through its
context CD-ROM and OneGate), so no secret may go there: secrets reach the VM over SSH only.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Mapping

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Attribute names that only ever carry secrets. TOKEN="YES" is allowed: it asks OpenNebula to
# create a OneGate token inside the VM, it is not itself a secret.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|PRIVATE_KEY|API_KEY|CREDENTIAL|TOKEN")
_SECRET_TEXT = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"JUPYTERHUB_API_TOKEN\s*=\s*['\"]?[^\s'\"$]"),
)
# "]]>" would end the CDATA section pyone wraps every value in.
_CDATA_END = "]]>"


def _check_name(kind: str, key: str) -> None:
    if not _NAME.match(key):
        raise ValueError(f"{kind} name {key!r} is not an OpenNebula attribute name "
                         "(use upper case letters, digits and _)")


def _looks_secret(value: str) -> bool:
    texts = [value]
    try:
        texts.append(base64.b64decode(value, validate=True).decode("utf-8", "replace"))
    except (binascii.Error, ValueError):
        pass
    return any(p.search(t) for p in _SECRET_TEXT for t in texts)


def check_context(context: Mapping[str, str]) -> dict[str, str]:
    """Validate CONTEXT attributes; return them as ``str`` values.

    Raises ValueError for names that carry secrets (``*PASSWORD*``, ``*TOKEN*`` other than
    ``TOKEN="YES"``...), for values that contain a private key or a JupyterHub API token, and
    for values OpenNebula cannot carry.
    """
    checked = {}
    for key, value in context.items():
        _check_name("CONTEXT attribute", key)
        text = str(value)
        if _SECRET_NAME.search(key) and not (key == "TOKEN" and text.upper() in ("YES", "NO")):
            raise ValueError(f"CONTEXT attribute {key} looks like a secret; secrets must not go "
                             "into a VM template (send them over SSH)")
        if _looks_secret(text):
            raise ValueError(f"CONTEXT attribute {key} contains a private key or API token; "
                             "secrets must not go into a VM template (send them over SSH)")
        if _CDATA_END in text:
            raise ValueError(f"CONTEXT attribute {key} contains ']]>', which OpenNebula cannot carry")
        checked[key] = text
    return checked


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Validate tags (custom USER_TEMPLATE attributes); same secret rules as CONTEXT."""
    checked = {}
    for key, value in tags.items():
        _check_name("tag", key)
        text = str(value)
        if _SECRET_NAME.search(key) or _looks_secret(text):
            raise ValueError(f"tag {key} looks like a secret; tags are readable by anyone "
                             "who can see the VM")
        if _CDATA_END in text or any(ch in text for ch in "\n\r\0"):
            raise ValueError(f"tag {key} contains characters OpenNebula cannot carry")
        checked[key] = text
    return checked


def sizing(cpu: float | None, vcpu: int | None, memory_mb: int | None) -> dict[str, Any]:
    """CPU/VCPU/MEMORY attributes for the values given (None means "keep the template's")."""
    out: dict[str, Any] = {}
    if cpu is not None:
        if cpu <= 0:
            raise ValueError("cpu must be positive")
        out["CPU"] = f"{float(cpu):g}"
    if vcpu is not None:
        if vcpu < 1:
            raise ValueError("vcpu must be at least 1")
        out["VCPU"] = str(int(vcpu))
    if memory_mb is not None:
        if memory_mb < 1:
            raise ValueError("memory_mb must be positive")
        out["MEMORY"] = str(int(memory_mb))
    return out


def as_xml_document(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap attributes so pyone sends them as a ``<TEMPLATE>`` XML document.

    pyone turns a dict whose single root holds a nested dict into XML with every value in
    CDATA, so quotes and newlines need no escaping.
    """
    return {"TEMPLATE": dict(attributes)}

"""oned's document formats for the OpenNebula double: template syntax and XML answers.

Templates are dicts: name -> str, or dict[str, str] (a vector attribute such as NIC), or a list
of those when the name repeats. Values are rendered in CDATA, as oned does.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

ACTIVE = 3
UNLIMITED, DEFAULT = -2.0, -1.0


# ---------------------------------------------------------------- templates

def parse_template(text: str) -> dict[str, Any]:
    """Parse a template given as XML (``<TEMPLATE>...``) or ``NAME = value`` text."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("<"):
        root = ET.fromstring(text)
        out: dict[str, Any] = {}
        for child in root:
            value: Any = ({c.tag.upper(): (c.text or "") for c in child} if len(child)
                          else (child.text or ""))
            _add(out, child.tag.upper(), value)
        return out
    return _parse_text(text)


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:\\.|[^"\\])*")|([\[\],=])|([^\s\[\],="#]+))', re.S)


def _parse_text(text: str) -> dict[str, Any]:
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"syntax error in template near {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group(1):
            continue
        if m.group(2):
            tokens.append(("str", re.sub(r'\\(.)', r'\1', m.group(2)[1:-1])))
        elif m.group(3):
            tokens.append(("sym", m.group(3)))
        elif m.group(4):
            tokens.append(("str", m.group(4)))
    out: dict[str, Any] = {}
    it = iter(tokens)
    for kind, name in it:
        if kind != "str" or next(it, None) != ("sym", "="):
            raise ValueError(f"syntax error in template at {name!r}")
        kind, value = next(it, ("str", ""))
        if (kind, value) == ("sym", "["):
            vector: dict[str, str] = {}
            for k2, key in it:
                if (k2, key) == ("sym", "]"):
                    break
                if (k2, key) == ("sym", ","):
                    continue
                if next(it, None) != ("sym", "="):
                    raise ValueError(f"syntax error in vector attribute {name}")
                vector[key.upper()] = next(it, ("str", ""))[1]
            _add(out, name.upper(), vector)
        else:
            _add(out, name.upper(), value)
    return out


def _add(tmpl: dict[str, Any], name: str, value: Any) -> None:
    if name not in tmpl:
        tmpl[name] = value
    elif isinstance(tmpl[name], list):
        tmpl[name].append(value)
    else:
        tmpl[name] = [tmpl[name], value]


def merge_template(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """oned's Template::merge: each attribute in ``extra`` replaces the whole one in ``base``."""
    out = dict(base)
    for name, value in extra.items():
        out.pop(name, None)
        if value != {}:
            out[name] = value
    return out


def _cdata(value: Any) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_template(root: str, tmpl: dict[str, Any]) -> str:
    """``<ROOT><NAME><![CDATA[value]]></NAME>...</ROOT>`` the way oned renders templates."""
    parts = [f"<{root}>"]
    for name, value in tmpl.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                inner = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in item.items())
                parts.append(f"<{name}>{inner}</{name}>")
            else:
                parts.append(f"<{name}>{_cdata(item)}</{name}>")
    parts.append(f"</{root}>")
    return "".join(parts)


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def num(text: Any) -> str:
    return f"{float(text):g}"


# ---------------------------------------------------------------- XML answers

PERMISSIONS = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
               "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U>"
               "<OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>")


def quota_vm(limits: dict[str, float], used: dict[str, float], unset: float = DEFAULT) -> str:
    """One ``<VM>`` quota entry (limits and *_USED), values in CDATA like oned's."""
    values = {}
    for metric in ("CPU", "MEMORY", "RUNNING_CPU", "RUNNING_MEMORY", "RUNNING_VMS",
                   "SYSTEM_DISK_SIZE", "VMS"):
        values[metric] = num(limits.get(metric, unset))
        # Running counters follow the totals: the double's VMs run as soon as they exist.
        values[f"{metric}_USED"] = num(used.get(metric.replace("RUNNING_", ""), 0))
    return render_template("VM", values)


def vm_xml(vm, *, extended: bool) -> str:
    """oned's ``<VM>`` document; ``extended=False`` gives vmpool.info's short body."""
    if extended:
        template, user_template = vm.template, vm.user_template
    else:  # vmpool.info's short body: a few attributes only
        template = {k: v for k, v in vm.template.items()
                    if k in ("CPU", "MEMORY", "NIC", "GRAPHICS", "TEMPLATE_ID")}
        user_template = {k: v for k, v in vm.user_template.items()
                         if k in ("LABELS", "ERROR", "SCHED_MESSAGE")}
    history = ""
    if vm.state == ACTIVE or vm.prev_state == ACTIVE:
        history = (f"<HISTORY><OID>{vm.id}</OID><SEQ>0</SEQ><HOSTNAME>one-double-host"
                   f"</HOSTNAME><HID>0</HID><CID>0</CID><STIME>{vm.stime}</STIME>"
                   f"<ETIME>{vm.etime}</ETIME><VM_MAD>kvm</VM_MAD><TM_MAD>ssh</TM_MAD>"
                   f"<DS_ID>0</DS_ID><ACTION>0</ACTION><UID>-1</UID><GID>-1</GID>"
                   f"<REQUEST_ID>-1</REQUEST_ID></HISTORY>")
    owner = vm.owner
    return (f"<VM><ID>{vm.id}</ID><UID>{owner.id}</UID><GID>{owner.gid}</GID>"
            f"<UNAME>{escape(owner.name)}</UNAME><GNAME>{owner.gname}</GNAME>"
            f"<NAME>{escape(vm.name)}</NAME>{PERMISSIONS}<LAST_POLL>0</LAST_POLL>"
            f"<STATE>{vm.state}</STATE><LCM_STATE>{vm.lcm_state}</LCM_STATE>"
            f"<PREV_STATE>{vm.prev_state}</PREV_STATE>"
            f"<PREV_LCM_STATE>{vm.prev_lcm_state}</PREV_LCM_STATE><RESCHED>0</RESCHED>"
            f"<STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME>"
            f"<DEPLOY_ID>{'one-%d' % vm.id if vm.state == ACTIVE else ''}</DEPLOY_ID>"
            f"<MONITORING/><SCHED_ACTIONS/>{render_template('TEMPLATE', template)}"
            f"{render_template('USER_TEMPLATE', user_template)}"
            f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS>"
            f"<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>")


def user_xml(user, default_limits: dict[str, float]) -> str:
    """oned's ``<USER>`` document with VM_QUOTA and DEFAULT_USER_QUOTAS."""
    vm_quota = ""
    if user.quota_touched and user.id != 0:
        vm_quota = quota_vm({m: user.limits[m] for m in user.limits}, user.used)
    defaults = ""
    if any(v != UNLIMITED for v in default_limits.values()):
        defaults = quota_vm(default_limits, {}, unset=UNLIMITED)
    digest = hashlib.sha256(user.password.encode()).hexdigest()
    return (f"<USER><ID>{user.id}</ID><GID>{user.gid}</GID><GROUPS><ID>{user.gid}</ID>"
            f"</GROUPS><GNAME>{user.gname}</GNAME><NAME>{escape(user.name)}</NAME>"
            f"<PASSWORD>{digest}</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER>"
            f"<ENABLED>1</ENABLED><TEMPLATE></TEMPLATE><DATASTORE_QUOTA></DATASTORE_QUOTA>"
            f"<NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA>{vm_quota}</VM_QUOTA>"
            f"<IMAGE_QUOTA></IMAGE_QUOTA><DEFAULT_USER_QUOTAS><DATASTORE_QUOTA>"
            f"</DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA>{defaults}"
            f"</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></DEFAULT_USER_QUOTAS></USER>")

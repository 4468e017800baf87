"""oned's document formats for the OpenNebula double: template syntax and XML answers.

Templates are dicts: name -> str, or dict[str, str] (a vector attribute such as NIC), or a list
of those when the name repeats. Sources (OpenNebula/one, tag release-7.3.80, line numbers
checked):

* Text templates: ``src/parsers/template_parser.l`` 45-100 (lexer) and
  ``src/parsers/template_syntax.y`` 100-180 (grammar), 181-191 (``unescape``). A quoted value
  is ``"([^"]|\\")*"``; the only escape oned removes is ``\\"`` -> ``"``. **Backslashes are
  kept as sent**: ``A = "x\\\\y"`` stores ``x\\\\y`` (two backslashes), ``A = "say \\"hi\\""``
  stores ``say "hi"``. A value that holds ``]]>`` aborts the parse. Names are upper-cased
  (``include/Attribute.h`` 38) and values trimmed (``src/template/Template.cc`` 116-160, 495).
* XML templates (the text starts with ``<``): ``Template::rebuild_attributes`` and
  ``single_xml_att``/``vector_xml_att`` (``src/template/Template.cc`` 518-650): an element with
  one text/CDATA child is a single attribute (an empty ``<![CDATA[]]>`` too: libxml2 makes a
  node of it), one with element children a vector, an empty element is dropped. No backslash
  processing at all.
* Rendering: attributes live in a ``std::multimap`` (``include/Template.h`` 515), so
  ``Template::to_xml`` (``Template.cc`` 353-369) lists them by name; vector attributes keep
  their values in a ``std::map`` (sorted too); every value is CDATA.
* VM_QUOTA entries: ``share/doc/xsd/shared.xsd`` 75-107 (``CLUSTER_IDS`` first and only on
  cluster entries, then the metrics in alphabetical order).
"""
from __future__ import annotations

import hashlib
from xml.parsers import expat
from typing import Any
from xml.sax.saxutils import escape

UNLIMITED, DEFAULT = -2.0, -1.0
QUOTA_METRICS = ("CPU", "MEMORY", "PCI_DEV", "PCI_NIC", "RUNNING_CPU", "RUNNING_MEMORY",
                 "RUNNING_PCI_DEV", "RUNNING_PCI_NIC", "RUNNING_VMS", "SYSTEM_DISK_SIZE", "VMS")
_SPACE = " \t\n\r\f\v"


class TemplateSyntaxError(ValueError):
    """oned's ``Parse error: ...`` for a template it cannot read."""


# ---------------------------------------------------------------- parsing

def parse_template(text: str) -> dict[str, Any]:
    """``Template::parse_str_or_xml``: XML when the first character is ``<``, else oned's
    ``NAME = value`` syntax. Raises :class:`TemplateSyntaxError` with oned's wording."""
    text = text or ""
    if text.startswith("<"):
        try:
            root = _xml_tree(text)
        except expat.ExpatError:
            raise TemplateSyntaxError("Parse error: XML Template malformed.") from None
        out: dict[str, Any] = {}
        for name, texts, kids in root[2]:
            if kids:  # vector_xml_att: children that hold text, the last of a name wins
                vector = {k: "".join(t).strip(_SPACE) for k, t, _ in kids if t}
                _add(out, name.upper(), {k.upper(): v for k, v in vector.items()})
            elif texts:  # single_xml_att: one text or CDATA child, even an empty CDATA
                _add(out, name.upper(), "".join(texts).strip(_SPACE))
        return out
    return _parse_text(text)


def _xml_tree(text: str):
    """(tag, text pieces, children) per element, as libxml2 sees them: an empty CDATA section
    counts as a text child (ElementTree cannot tell it from no child at all)."""
    stack: list[tuple[str, list[str], list]] = [("", [], [])]
    parser = expat.ParserCreate()

    def start(tag, _attrs):
        stack.append((tag, [], []))

    def end(_tag):
        node = stack.pop()
        stack[-1][2].append(node)

    def chars(data):
        stack[-1][1].append(data)

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    parser.StartCdataSectionHandler = lambda: stack[-1][1].append("")
    parser.Parse(text, True)
    return stack[0][2][0]


def _blank(c: str) -> bool:
    return c in " \t"


def _quoted_end(text: str, i: int) -> int:
    """End (exclusive) of the longest ``"([^"]|\\")*"`` match at ``i``, or -1."""
    last_escaped = -1
    for j in range(i + 1, len(text)):
        if text[j] == '"':
            if j - 1 > i and text[j - 1] == "\\":
                last_escaped = j + 1
            else:
                return j + 1
    return last_escaped


def _run(text: str, i: int, ok) -> int:
    while i < len(text) and ok(text[i]):
        i += 1
    return i


def _tokens(text: str):
    """oned's flex lexer: longest match, ties to the earlier rule, unmatched characters
    skipped (flex's default rule)."""
    state, i, n = "INITIAL", 0, len(text)
    while i < n:
        cands: list[tuple[int, str, str]] = []  # (end, kind, value) in rule order
        if state == "INITIAL":
            b = _run(text, i, _blank)
            if b < n and text[b] == "#":
                nl = text.find("\n", b)
                if nl != -1:
                    cands.append((nl + 1, "SKIP", ""))
            cands.append((_run(text, i, lambda c: _blank(c) or c == "\n"), "SKIP", ""))
            cands.append((_run(text, i, lambda c: c.isalnum() or c == "_"), "VARIABLE", ""))
            if b < n and text[b] == "=":
                e = _run(text, b + 1, _blank)
                cands.append((e, "EQUAL", ""))
                if e < n and text[e] == "\n":
                    cands.append((e + 1, "EQUAL_EMPTY", ""))
            w = _run(text, i, lambda c: _blank(c) or c == "\n")
            if w < n and text[w] in ",]":
                cands.append((_run(text, w + 1, lambda c: _blank(c) or c == "\n"),
                              "COMMA" if text[w] == "," else "CBRACKET", ""))
        else:
            b = _run(text, i, _blank)
            if b < n and text[b] == "[":
                cands.append((_run(text, b + 1, lambda c: _blank(c) or c == "\n"),
                              "OBRACKET", ""))
            eol = text.find("\n", i)
            eol = n if eol == -1 else eol
            if "]]>" in text[i:eol]:
                cands.append((eol, "CCDATA", ""))
            if text[i] == '"':
                e = _quoted_end(text, i)
                if e != -1:
                    cands.append((e, "STRING", text[i + 1:e - 1]))
            e = _run(text, i, lambda c: c not in "=#[]," and not _blank(c) and c != "\n")
            cands.append((e, "STRING", text[i:e]))
        best = max(cands, key=lambda c: c[0])  # max() keeps the first of equal lengths
        if best[0] == i:  # nothing matched: flex echoes the character, i.e. skips it
            i += 1
            continue
        end, kind, value = best
        if kind == "VARIABLE":
            value = text[i:end]
        if kind in ("EQUAL",):
            state = "VALUE"
        elif kind in ("OBRACKET", "CCDATA", "STRING"):
            state = "INITIAL"
        if kind != "SKIP":
            yield kind, value
        i = end


def _parse_text(text: str) -> dict[str, Any]:
    toks = list(_tokens(text)) + [("$end", "")]
    pos = 0

    def take(*kinds: str) -> str:
        nonlocal pos
        kind, value = toks[pos]
        if kind not in kinds:
            shown = "$end" if kind == "$end" else kind
            raise TemplateSyntaxError(f"Parse error: syntax error, unexpected {shown}, "
                                      f"expecting {' or '.join(kinds)}")
        pos += 1
        return value

    out: dict[str, Any] = {}
    while toks[pos][0] != "$end":
        name = take("VARIABLE").upper()
        kind = toks[pos][0]
        if kind == "EQUAL_EMPTY":
            take("EQUAL_EMPTY")
            _add(out, name, "")
            continue
        take("EQUAL")
        if toks[pos][0] == "CCDATA":
            raise TemplateSyntaxError("Parse error: value contains ']]>'")
        if toks[pos][0] == "STRING":
            _add(out, name, _unescape(take("STRING")))
            continue
        take("OBRACKET")
        vector: dict[str, str] = {}
        while toks[pos][0] != "CBRACKET":
            if vector:
                take("COMMA")
            key = take("VARIABLE").upper()
            take("EQUAL")
            vector.setdefault(key, _unescape(take("STRING")))  # std::map insert keeps the first
        take("CBRACKET")
        _add(out, name, vector)
    return out


def _unescape(value: str) -> str:
    # template_syntax.y unescape(): only \" becomes "; then Template::trim_attributes.
    return value.replace('\\"', '"').strip(_SPACE)


def _add(tmpl: dict[str, Any], name: str, value: Any) -> None:
    if name not in tmpl:
        tmpl[name] = value
    elif isinstance(tmpl[name], list):
        tmpl[name].append(value)
    else:
        tmpl[name] = [tmpl[name], value]


def merge_template(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """oned's ``Template::merge`` (``Template.cc`` 675-698): every name in ``extra`` replaces
    all of that name in ``base``; empty vectors are dropped."""
    out = dict(base)
    for name, value in extra.items():
        out.pop(name, None)
        items = [v for v in (value if isinstance(value, list) else [value]) if v != {}]
        if items:
            out[name] = items if len(items) > 1 else items[0]
    return out


# ---------------------------------------------------------------- context

# VirtualMachineContext.cc 44-71: context variable -> NIC attribute (or the address range's
# value via $NETWORK[...], looked up in ``vnet``), for IPv4 then IPv6.
_NET_CONTEXT = (("IP", "IP"), ("MAC", "MAC"), ("MASK", "NETWORK_MASK"),
                ("NETWORK", "NETWORK_ADDRESS"), ("GATEWAY", "GATEWAY"), ("DNS", "DNS"),
                ("SEARCH_DOMAIN", "SEARCH_DOMAIN"), ("MTU", "GUEST_MTU"), ("METRIC", "METRIC"),
                ("METHOD", "METHOD"), ("VLAN_ID", "VLAN_ID"), ("VROUTER_IP", "VROUTER_IP"),
                ("VROUTER_MANAGEMENT", "VROUTER_MANAGEMENT"), ("EXTERNAL", "EXTERNAL"),
                ("ROUTES", "ROUTES"), ("IP6", "IP6_GLOBAL"), ("IP6_ULA", "IP6_ULA"),
                ("IP6_GATEWAY", "GATEWAY6"), ("IP6_METRIC", "IP6_METRIC"),
                ("IP6_METHOD", "IP6_METHOD"), ("IP6_PREFIX_LENGTH", "PREFIX_LENGTH"),
                ("VROUTER_IP6", "VROUTER_IP6_GLOBAL"))


def network_context(context: dict[str, str], nics: list[dict[str, str]],
                    vnets: list[dict[str, str]]) -> dict[str, str]:
    """``VirtualMachine::generate_network_context`` (VirtualMachineContext.cc 357-397, 404-415):
    with ``NETWORK = "YES"`` every NIC adds ``ETH<NIC_ID>_<VAR>`` (empty when neither the NIC
    nor its network has the value); without it the CONTEXT is left as it is."""
    if str(context.get("NETWORK", "")).upper() != "YES":
        return dict(context)
    out = dict(context)
    for nic, vnet in zip(nics, vnets):
        for var, attr in _NET_CONTEXT:
            out[f"ETH{nic.get('NIC_ID', '0')}_{var}"] = nic.get(attr) or vnet.get(attr, "")
    return out


# ---------------------------------------------------------------- rendering

def _cdata(value: Any) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_template(root: str, tmpl: dict[str, Any]) -> str:
    """``<ROOT><NAME><![CDATA[value]]></NAME>...</ROOT>`` in oned's order (by name)."""
    parts = [f"<{root}>"]
    for name in sorted(tmpl):
        value = tmpl[name]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                inner = "".join(f"<{k}>{_cdata(item[k])}</{k}>" for k in sorted(item))
                parts.append(f"<{name}>{inner}</{name}>")
            else:
                parts.append(f"<{name}>{_cdata(item)}</{name}>")
    parts.append(f"</{root}>")
    return "".join(parts)


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def num(value: Any) -> str:
    """A quota figure as oned prints a float (``ostream``: ``1``, ``0.5``, ``2048``)."""
    return f"{float(value):g}"


# ---------------------------------------------------------------- XML answers

def permissions(owner_admin: bool = False) -> str:
    """``<PERMISSIONS>`` for oned.conf's DEFAULT_UMASK 177 (``share/etc/oned.conf`` 753):
    the owner may USE and MANAGE but not ADMIN (``owner_admin`` flips that bit)."""
    return ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M>"
            f"<OWNER_A>{int(owner_admin)}</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M>"
            "<GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A>"
            "</PERMISSIONS>")


PERMISSIONS = permissions()


def quota_entry_xml(limits: dict[str, float], used: dict[str, float],
                    cluster_ids: str = "", unset: float = DEFAULT) -> str:
    """One ``<VM>`` quota entry: CLUSTER_IDS (cluster entries only), then each metric and its
    ``_USED`` figure, alphabetically (shared.xsd 75-107), values in CDATA like oned's."""
    values: dict[str, str] = {}
    for metric in QUOTA_METRICS:
        values[metric] = num(limits.get(metric, unset))
        values[f"{metric}_USED"] = num(used.get(metric, 0))
    body = render_template("VM", values)
    if cluster_ids:
        body = body.replace("<VM>", f"<VM><CLUSTER_IDS>{_cdata(cluster_ids)}</CLUSTER_IDS>", 1)
    return body


_SHORT_DISK = ("DISK_ID", "DATASTORE", "DATASTORE_ID", "IMAGE", "IMAGE_ID", "SIZE", "TYPE",
               "CLONE", "CLONE_TARGET", "LN_TARGET", "DISK_SNAPSHOT_TOTAL_SIZE")


def vm_xml(vm, *, extended: bool) -> str:
    """oned's ``<VM>`` document; ``extended=False`` gives vmpool.info's short body."""
    template = dict(vm.template)
    disks = getattr(vm, "disks", None)
    if disks:  # the DISKs oned built (image attributes, DISK_ID, TARGET), not those asked
        template["DISK"] = [dict(d) for d in disks] if len(disks) > 1 else dict(disks[0])
    elif disks is not None:
        template.pop("DISK", None)
    if extended:
        user_template = vm.user_template
    else:  # vmpool.info's short body: a few attributes only (VirtualMachineTemplate.cc 40-90;
        # DISKs by VirtualMachineDisk::to_xml_short, VirtualMachineDisk.cc 668-683)
        short = [{k: d[k] for k in _SHORT_DISK if k in d} for d in disks or []]
        template = {k: v for k, v in template.items()
                    if k in ("CPU", "MEMORY", "NIC", "GRAPHICS", "TEMPLATE_ID")}
        if short:
            template["DISK"] = short if len(short) > 1 else short[0]
        user_template = {k: v for k, v in vm.user_template.items()
                         if k in ("LABELS", "ERROR", "SCHED_MESSAGE")}
    history = ""
    if vm.cluster_id is not None:  # a history record exists once the VM was deployed
        history = (f"<HISTORY><OID>{vm.id}</OID><SEQ>0</SEQ><HOSTNAME>one-double-host"
                   f"</HOSTNAME><HID>0</HID><CID>{vm.cluster_id}</CID><STIME>{vm.stime}</STIME>"
                   f"<ETIME>{vm.etime}</ETIME><VM_MAD>kvm</VM_MAD><TM_MAD>ssh</TM_MAD>"
                   f"<DS_ID>0</DS_ID><ACTION>{vm.history_action}</ACTION><UID>-1</UID>"
                   f"<GID>-1</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>")
    owner = vm.owner
    return (f"<VM><ID>{vm.id}</ID><UID>{owner.id}</UID><GID>{owner.gid}</GID>"
            f"<UNAME>{escape(owner.name)}</UNAME><GNAME>{owner.gname}</GNAME>"
            f"<NAME>{escape(vm.name)}</NAME>{permissions(owner.admin_own_vms)}"
            f"<LAST_POLL>0</LAST_POLL>"
            f"<STATE>{vm.state}</STATE><LCM_STATE>{vm.lcm_state}</LCM_STATE>"
            f"<PREV_STATE>{vm.prev_state}</PREV_STATE>"
            f"<PREV_LCM_STATE>{vm.prev_lcm_state}</PREV_LCM_STATE><RESCHED>0</RESCHED>"
            f"<STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME>"
            f"<DEPLOY_ID>{escape(vm.deploy_id)}</DEPLOY_ID>"
            f"<MONITORING/><SCHED_ACTIONS/>{render_template('TEMPLATE', template)}"
            f"{render_template('USER_TEMPLATE', user_template)}"
            f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS>"
            f"<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>")


def user_xml(user, entries: list[tuple[str, dict[str, float], dict[str, float]]],
             default_limits: dict[str, float],
             datastore_quota: str = "<DATASTORE_QUOTA></DATASTORE_QUOTA>") -> str:
    """oned's ``<USER>``: ``entries`` are the VM_QUOTA entries as (cluster_ids, limits,
    used) in oned's order; DEFAULT_USER_QUOTAS from ``default_limits``; ``datastore_quota``
    the ``<DATASTORE_QUOTA>`` element (``tests.one_images.datastore_quota_xml``)."""
    vm_quota = "".join(quota_entry_xml(limits, used, cids, UNLIMITED if cids else DEFAULT)
                       for cids, limits, used in entries)
    defaults = ""
    if any(v != UNLIMITED for v in default_limits.values()):
        defaults = quota_entry_xml(default_limits, {}, unset=UNLIMITED)
    digest = hashlib.sha256(user.password.encode()).hexdigest()
    return (f"<USER><ID>{user.id}</ID><GID>{user.gid}</GID><GROUPS><ID>{user.gid}</ID>"
            f"</GROUPS><GNAME>{user.gname}</GNAME><NAME>{escape(user.name)}</NAME>"
            f"<PASSWORD>{digest}</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER>"
            f"<ENABLED>1</ENABLED><TEMPLATE></TEMPLATE>{datastore_quota}"
            f"<NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA>{vm_quota}</VM_QUOTA>"
            f"<IMAGE_QUOTA></IMAGE_QUOTA><DEFAULT_USER_QUOTAS><DATASTORE_QUOTA>"
            f"</DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA>{defaults}"
            f"</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></DEFAULT_USER_QUOTAS></USER>")

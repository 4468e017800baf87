"""The spawn form (profiles, quota, own resource) and validation of user_options.

The same validation serves the form and the REST API's ``user_options``; every error names the
field it is about.
"""
from __future__ import annotations

import html
import re
from typing import Any, Protocol

from tornado import web

from machines import JumpHost

from .profiles import VmProfile


class FormOwner(Protocol):
    """What the form needs from the spawner (a protocol, so the two modules do not import each
    other)."""

    user: Any
    user_options: dict
    machine_provider: Any
    server_state: Any

    def profile_list(self) -> list[VmProfile]: ...

# fullmatch, never match + "$" (which accepts a trailing newline)
HOST_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
FIELDS = {"profile", "resource_host", "resource_user", "resource_port", "resource_jump",
          "resource_trust_new_host_key"}
YES = {"yes", "on", "true", "1"}


def bad_field(field: str, message: str) -> web.HTTPError:
    """HTTP 400 whose message starts with the field's name."""
    return web.HTTPError(400, f"{field}: {message}", reason=f"{field}: {message}")



def options_from_form(formdata: dict) -> dict:
    """Form fields arrive as lists of strings: keep the first, drop empty ones."""
    return {k: v[0].strip() for k, v in formdata.items() if v and v[0].strip()}


def validate_options(options: dict, spawner: FormOwner) -> dict:
    """Normalise and check user_options; raise HTTP 400 naming the field."""
    if not isinstance(options, dict):
        raise bad_field("user_options", "must be an object")
    unknown = sorted(set(options) - FIELDS)
    if unknown:
        raise bad_field(unknown[0], f"unknown option (allowed: {', '.join(sorted(FIELDS))})")
    profiles = spawner.profile_list()
    out: dict = {}
    slug = options.get("profile") or profiles[0].slug
    if not isinstance(slug, str) or slug not in {p.slug for p in profiles}:
        raise bad_field("profile", f"no profile named {slug!r}; choose one of "
                   + ", ".join(p.slug for p in profiles))
    out["profile"] = slug
    if options.get("resource_host"):
        provider = spawner.machine_provider
        if not getattr(provider, "allow_user_resources", False):
            raise bad_field("resource_host", "this hub does not serve on users' own machines")
        host = str(options["resource_host"])
        if not HOST_RE.fullmatch(host):
            raise bad_field("resource_host", f"{host!r} is not a host name or IP address")
        out["resource_host"] = host
        user = str(options.get("resource_user") or "")
        if user and not USER_RE.fullmatch(user):
            raise bad_field("resource_user", f"{user!r} is not a valid login name")
        if user:
            out["resource_user"] = user
        port = options.get("resource_port") or 22
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise bad_field("resource_port", f"{port!r} is not a number") from None
        if not 1 <= port <= 65535:
            raise bad_field("resource_port", "must be between 1 and 65535")
        out["resource_port"] = port
        jump = str(options.get("resource_jump") or "")
        if jump and any(ch.isspace() for ch in jump):
            raise bad_field("resource_jump", f"{jump!r} is not of the form user@host[:port]")
        if jump:
            try:
                parsed = JumpHost.parse(jump, user or spawner.user.name)
            except ValueError as e:
                raise bad_field("resource_jump", str(e)) from None
            if not HOST_RE.fullmatch(parsed.host) or not USER_RE.fullmatch(parsed.username):
                raise bad_field("resource_jump", f"{jump!r} is not of the form user@host[:port]")
            out["resource_jump"] = jump
        trust = options.get("resource_trust_new_host_key")
        if trust not in (None, "", False):
            if str(trust).lower() not in YES | {"no", "off", "false", "0"}:
                raise bad_field("resource_trust_new_host_key", "must be yes or no")
            if str(trust).lower() in YES:
                out["resource_trust_new_host_key"] = True
    else:
        for field in ("resource_user", "resource_port", "resource_jump",
                      "resource_trust_new_host_key"):
            if options.get(field):
                raise bad_field(field, "only used together with resource_host")
    return out


def check_literal_addresses(options: dict, provider) -> None:
    """Refuse at once a user's machine given as a refused address (the hub itself, loopback,
    metadata, outside the admin's networks): raises :class:`machines.errors.HostRefused`."""
    if not options.get("resource_host") or not hasattr(provider, "literal_address_checked"):
        return
    if options.get("resource_jump"):
        jump = JumpHost.parse(options["resource_jump"], "x")
        provider.literal_address_checked(jump.host, "resource_jump")
    else:
        provider.literal_address_checked(options["resource_host"], "resource_host")


async def render_form(spawner: FormOwner) -> str:
    """HTML for the spawn page: profile cards, the user's quota, own-resource fields."""
    esc = html.escape
    profiles = spawner.profile_list()
    chosen = (spawner.user_options or {}).get("profile") or profiles[0].slug
    cards = []
    for p in profiles:
        checked = " checked" if p.slug == chosen else ""
        life = f", up to {p.max_lifetime_hours:g} h" if p.max_lifetime_hours else ""
        cards.append(
            f'<label class="list-group-item d-flex gap-2">'
            f'<input class="form-check-input" type="radio" name="profile" value="{esc(p.slug)}"'
            f'{checked}><span><strong>{esc(p.name)}</strong>'
            f'<small class="d-block text-muted">{esc(p.description)} '
            f'({p.vcpu} vCPU, {p.memory_mb} MB{life})</small></span></label>'
        )
    parts = ['<div class="nebulahub-form">']
    state = getattr(spawner, "server_state", None)
    if state is not None and state.notice:
        log = (f'<details><summary>The last lines of its log</summary><pre class="small">'
               f"{esc(state.notice_log)}</pre></details>" if state.notice_log else "")
        parts.append(f'<div class="alert alert-warning nebulahub-notice">{esc(state.notice)}'
                     f"{log}</div>")
    parts += ['<h5>Choose your server</h5>',
              f'<div class="list-group mb-3">{"".join(cards)}</div>']
    info = await spawner.machine_provider.form_info(spawner.user.name)
    quota = {k: v for k, v in info.items() if not k.startswith("Hub key")}
    if quota:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in quota.items())
        parts.append(f'<h6>Your cloud quota</h6><table class="table table-sm nebulahub-quota">'
                     f"{rows}</table>")
    key = info.get("Hub key for your resource")
    if key:
        parts.append(
            '<details class="mb-3"><summary>Or use your own SSH machine</summary>'
            "<p>Add this line to <code>~/.ssh/authorized_keys</code> on the machine (and on the "
            f'jump host, if any):</p><pre class="user-select-all">{esc(key)}</pre>'
            '<input class="form-control mb-1" name="resource_host" placeholder="host">'
            '<input class="form-control mb-1" name="resource_user" placeholder="login name">'
            '<input class="form-control mb-1" name="resource_port" placeholder="port (22)">'
            '<input class="form-control mb-1" name="resource_jump" '
            'placeholder="jump host user@host[:port] (optional)">'
            '<label class="form-check"><input class="form-check-input" type="checkbox" '
            'name="resource_trust_new_host_key" value="yes"> Trust its new host key (only if '
            "you reinstalled the machine or changed its key yourself)</label></details>"
        )
    parts.append("</div>")
    return "".join(parts)

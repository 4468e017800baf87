"""Errors the OpenNebula façade raises, and the translation from pyone and transport errors.

Every message is a sentence a student (or the admin reading the hub log) can act on, followed by
the cloud's own words. The session secret never appears: messages pass through :func:`redact`.
"""
from __future__ import annotations

import asyncio
import socket
import xml.parsers.expat
import xmlrpc.client
from urllib.parse import urlsplit, urlunsplit

import pyone
import requests


class OpenNebulaError(Exception):
    """Base class: something went wrong talking to OpenNebula.

    ``cloud_message`` holds OpenNebula's own text (or the transport error), if any.
    ``transient`` says whether trying again later may help.
    """

    transient = False

    def __init__(self, message: str, *, cloud_message: str | None = None):
        super().__init__(message)
        self.cloud_message = cloud_message


class AuthenticationError(OpenNebulaError):
    """OpenNebula refused the hub's credentials (wrong user:password or token)."""


class AuthorizationError(OpenNebulaError):
    """The credentials are valid but the user may not do this (ACLs, restricted attributes)."""


class NotFoundError(OpenNebulaError):
    """The VM (or template) does not exist."""


class QuotaExceededError(OpenNebulaError):
    """The request would go over the user's or group's quota."""


class CloudUnavailableError(OpenNebulaError):
    """OpenNebula could not be reached or did not answer in time (refused, timeout, HTTP 5xx)."""

    transient = True


class VmBusyError(OpenNebulaError):
    """OpenNebula refused an action in the VM's current state (e.g. terminate during PROLOG);
    it is allowed again once the VM leaves that state (oned's ACTION error, 0x800)."""

    transient = True


class LockedError(OpenNebulaError):
    """The object is locked by an admin (oned's LOCKED, 0x8000); allowed again once unlocked."""

    transient = True


class AllocationError(OpenNebulaError):
    """OpenNebula could not allocate the object (oned's ALLOCATE, 0x4000): the template or the
    request is wrong; trying again does not help."""


_TIMEOUT_TYPES = (asyncio.TimeoutError, TimeoutError, requests.Timeout, socket.timeout)


def public_endpoint(endpoint: str) -> str:
    """The endpoint without any ``user:password@`` part, safe to show."""
    parts = urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret (the session, its password part) in ``text`` by ``****``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


def _is_quota_message(message: str) -> bool:
    lowered = message.lower()
    return "quota" in lowered and ("limit" in lowered or "exceed" in lowered)


def _transport_reason(exc: BaseException) -> str:
    """A short human reason for a connection-level failure."""
    chain = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__ or (
            cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None)
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, (socket.timeout, TimeoutError, requests.Timeout)):
            return "no answer in time"
        if isinstance(item, socket.gaierror):
            return "host name not found"
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    if "timed out" in text.lower():
        return "no answer in time"
    return text or type(exc).__name__


def translate(exc: BaseException, *, endpoint: str, what: str,
              secrets: tuple[str, ...] = (), object_kind: str | None = None,
              object_id: int | None = None) -> OpenNebulaError:
    """Map a pyone or transport exception to one of our errors.

    ``what`` is the action in words ("create the VM", "read VM 42") for the message.
    """
    where = public_endpoint(endpoint)
    raw = redact(str(exc), secrets)

    def make(cls, sentence: str, cloud: str | None = raw):
        text = sentence if not cloud else f"{sentence}: {cloud}"
        return cls(redact(text, secrets), cloud_message=cloud)

    if isinstance(exc, OpenNebulaError):
        return exc
    if isinstance(exc, pyone.OneAuthenticationException):
        return make(AuthenticationError,
                    f"OpenNebula at {where} refused the hub's credentials while trying to {what} "
                    "(check the hub's OpenNebula user and password or token, e.g. the auth file)")
    if isinstance(exc, (pyone.OneAuthorizationException, pyone.OneActionException,
                        pyone.OneApiException, pyone.OneInternalException)) and _is_quota_message(raw):
        return make(QuotaExceededError,
                    f"OpenNebula refused to {what} because it would exceed the quota "
                    "(stop another server or ask the cloud admin for more)")
    if isinstance(exc, pyone.OneAuthorizationException) and "CREATE TEMPLATE" in raw:
        return make(AuthorizationError,
                    f"the hub's OpenNebula user is not allowed to {what}: creating a VM with "
                    "settings beyond its template (size, context, tags) needs CREATE permission "
                    "on templates, which its group lacks (ask the cloud admin to grant it)")
    if isinstance(exc, pyone.OneAuthorizationException):
        return make(AuthorizationError,
                    f"the hub's OpenNebula user is not allowed to {what} "
                    "(ask the cloud admin to check its ACLs and group)")
    if isinstance(exc, pyone.OneNoExistsException):
        if object_kind is not None and object_id is not None:
            sentence = f"{object_kind} {object_id} does not exist"
        else:
            sentence = f"OpenNebula could not find what is needed to {what}"
        return make(NotFoundError, sentence)
    if isinstance(exc, pyone.OneActionException) and "wrong state" in raw:
        return make(VmBusyError, f"OpenNebula could not {what} in the VM's current state "
                                 "(allowed again once it leaves that state)")
    if isinstance(exc, pyone.OneActionException):
        return make(OpenNebulaError, f"OpenNebula could not {what} in the VM's current state")
    if isinstance(exc, pyone.OneInternalException):
        # oned answers INTERNAL for its own failures and for templates it cannot use: not a
        # reason to wait and try again
        return make(OpenNebulaError,
                    f"OpenNebula at {where} had an internal error while trying to {what} "
                    "(trying again will not help if it is about the template: ask the cloud "
                    "admin)")
    if isinstance(exc, pyone.OneApiException):
        return make(OpenNebulaError, f"OpenNebula rejected the request to {what}")
    if isinstance(exc, xmlrpc.client.ProtocolError):
        status = exc.errcode
        if status in (401, 403):
            return make(AuthenticationError,
                        f"the web server in front of OpenNebula at {where} refused the request "
                        f"to {what} (HTTP {status})", None)
        if status == 404:
            return make(OpenNebulaError,
                        f"nothing answers XML-RPC at {where} (HTTP 404): check the endpoint, "
                        "usually http://HOST:2633/RPC2", None)
        return make(CloudUnavailableError,
                    f"OpenNebula at {where} answered HTTP {status} while trying to {what}; "
                    "it may be restarting", None)
    if isinstance(exc, _TIMEOUT_TYPES):
        return make(CloudUnavailableError,
                    f"OpenNebula at {where} did not answer in time while trying to {what}", None)
    if isinstance(exc, (requests.ConnectionError, ConnectionError, OSError)):
        return make(CloudUnavailableError,
                    f"cannot reach OpenNebula at {where}: {redact(_transport_reason(exc), secrets)}",
                    None)
    if isinstance(exc, (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError)):
        return make(CloudUnavailableError,
                    f"the server at {where} did not answer like OpenNebula's XML-RPC API "
                    "(check the endpoint)", None)
    if isinstance(exc, pyone.OneException) and "is locked" in raw:  # LOCKED (0x8000)
        return make(LockedError, f"OpenNebula could not {what}: an admin has locked it "
                                 "(allowed again once it is unlocked)")
    if isinstance(exc, pyone.OneException) and "Error allocating" in raw:  # ALLOCATE (0x4000)
        return make(AllocationError, f"OpenNebula could not {what}: it refused the request "
                                     "(trying again will not help; ask the cloud admin)")
    if isinstance(exc, pyone.OneException):
        return make(OpenNebulaError, f"OpenNebula could not {what}")
    return make(OpenNebulaError, f"unexpected error while trying to {what} "
                                 f"({type(exc).__name__})")

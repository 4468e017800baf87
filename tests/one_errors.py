"""oned's error codes and how oned words a failure answer, for the OpenNebula double.

Sources (OpenNebula/one at tag release-7.3.80, commit a8b9b798; line numbers checked):

* ``include/Request.h`` 36-49: the codes (AUTHENTICATION 0x100 ... LOCKED 0x8000).
* ``src/rm/Request.cc`` 37-127, ``Request::failure_message``: ``[method] `` then, by code,
  AUTHORIZATION ``User [uid] : <msg>.``, ACTION/RPC_API/INTERNAL ``<msg>``, NO_EXISTS
  ``Error getting <object> [id].``, ALLOCATE ``Error allocating a new <object>. <msg>``,
  LOCKED ``The resource <object> is locked. [id].``.
* ``src/rm/xml-rpc/RequestXRPC.cc`` 177-197: the answer ``[false, message, code, resp_id,
  replication_idx]``; ``resp_id`` is -1 unless the handler set it (only NO_EXISTS does).
* ``src/authm/AuthManager.cc`` 95-113: a refused permission reads
  ``Not authorized to perform <OP> <TYPE> [id]`` (no ``[id]`` for CREATE).
"""
from __future__ import annotations

AUTHENTICATION, AUTHORIZATION, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL, ALLOCATE, LOCKED = (
    0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0x8000)

CODE_NAMES = {AUTHENTICATION: "AUTHENTICATION", AUTHORIZATION: "AUTHORIZATION",
              NO_EXISTS: "NO_EXISTS", ACTION: "ACTION", XML_RPC_API: "RPC_API",
              INTERNAL: "INTERNAL", ALLOCATE: "ALLOCATE", LOCKED: "LOCKED"}

# RequestLogger::object_name (src/rm/RequestLogger.cc 28-80): what oned calls each object.
VM_OBJECT, TEMPLATE_OBJECT, USER_OBJECT = "virtual machine", "virtual machine template", "user"
IMAGE_OBJECT, DATASTORE_OBJECT = "image", "datastore"


class OneFault(Exception):
    """An oned failure answer. ``message`` is the request's ``resp_msg`` (what the handler
    said); :func:`failure_message` wraps it the way ``Request::failure_message`` does.
    ``uid`` is the caller (for AUTHORIZATION) and ``obj`` the object kind named in
    NO_EXISTS/ALLOCATE/LOCKED answers."""

    def __init__(self, code: int, message: str = "", resp_id: int = -1, *,
                 obj: str | None = None):
        super().__init__(message)
        self.code, self.message, self.resp_id, self.obj = code, message, resp_id, obj


def not_authorized(op: str, obj_type: str, oid: int = -1) -> str:
    """AuthRequest's refusal text, e.g. ``Not authorized to perform ADMIN VM [5]``."""
    return f"Not authorized to perform {op} {obj_type}" + (f" [{oid}]" if oid != -1 else "")


def failure_message(method: str, fault: OneFault, uid: int, default_obj: str) -> str:
    """The message string of oned's failure answer for ``fault`` raised in ``method``."""
    obj = fault.obj or default_obj
    code, msg = fault.code, fault.message
    if code == AUTHORIZATION:
        body = (f"User [{uid}] : {msg}." if msg
                else f"User [{uid}] not authorized to perform action on {obj}.")
    elif code == AUTHENTICATION:
        body = "User couldn't be authenticated, aborting call."
    elif code == NO_EXISTS:
        body = f"Error getting {obj}" + (f" [{fault.resp_id}]." if fault.resp_id != -1
                                         else " Pool.")
    elif code == ALLOCATE:
        body = f"Error allocating a new {obj}." + (f" {msg}" if msg else "")
    elif code == LOCKED:
        body = f"The resource {obj} is locked." + (f" [{fault.resp_id}]."
                                                   if fault.resp_id != -1 else "")
    else:  # ACTION, RPC_API, INTERNAL: the handler's words as they are
        body = msg
    return f"[{method}] {body}"

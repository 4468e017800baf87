"""oned's error codes and the failure answer of the OpenNebula double."""
from __future__ import annotations

AUTHENTICATION, AUTHORIZATION, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL, ALLOCATE = (
    0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000)


class OneFault(Exception):
    """An oned failure answer: ``[False, message, code, resp_id, 0]``."""

    def __init__(self, code: int, message: str, resp_id: int = -1):
        super().__init__(message)
        self.code, self.message, self.resp_id = code, message, resp_id

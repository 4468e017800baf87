"""What the machine layer remembers about a machine it handed out (persisted by the caller).

Every field has one meaning and a reason to be kept: enough to reach, check and give back the
machine after the caller (the hub) restarts. No secret is kept in clear: the per-acquisition key is
sealed with the hub's crypt key.
"""
from __future__ import annotations

from pydantic import BaseModel, Field


class JumpHost(BaseModel):
    """A ProxyJump bastion."""

    host: str
    username: str
    port: int = 22

    @classmethod
    def parse(cls, text: str, default_user: str) -> "JumpHost | None":
        """``[user@]host[:port]`` -> JumpHost; empty -> None."""
        text = (text or "").strip()
        if not text:
            return None
        user, _, hostport = text.rpartition("@")
        host, _, port = hostport.partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"jump host {text!r} is not of the form user@host[:port]")
        if port and not 1 <= int(port) <= 65535:
            raise ValueError(f"jump host {text!r}: the port must be between 1 and 65535")
        return cls(host=host, username=user or default_user, port=int(port or 22))


class Machine(BaseModel):
    """One acquired machine, as the caller persists it."""

    provider: str = Field("", description="which provider made it: it alone can give it back")
    user: str = Field("", description="the user it serves (their own machines' keys are theirs)")
    start_id: str = Field("", description="the acquisition's id, tagged on the machine first")
    vm_id: int | None = Field(None, description="the cloud VM to terminate on release")
    volume_id: int | None = Field(None, description="the user's home volume attached to the "
                                                    "VM: never deleted with it")
    own_resource: bool = Field(False, description="the user's own machine: keys pinned per user")
    host: str = Field("", description="address the hub connects to")
    port: int = Field(22, description="its SSH port")
    username: str = Field("", description="the account workloads run as on it")
    jump: JumpHost | None = Field(None, description="bastion the hub connects through")
    home: str = Field("", description="the account's home, when known without logging in")
    python_env: str = Field("", description="environment the bootstrap runs with (local machines)")
    sealed_private_key: str = Field("", repr=False,
                                    description="per-acquisition SSH key, sealed")
    host_keys: dict[str, str] = Field(default_factory=dict,
                                      description="host:port -> key pinned at first contact")

    @property
    def exists(self) -> bool:
        """Something may have been acquired that must be given back (a VM being created is
        found by its start id even before its id is known)."""
        return self.vm_id is not None or bool(self.host) or bool(self.start_id)

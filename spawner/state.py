"""What the hub must remember about one server to reach, check and clean it after a restart."""
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


class ServerState(BaseModel):
    """Persisted in the hub database as the spawner state (JSON)."""

    provider: str = ""
    start_id: str = ""
    profile: str = ""
    started_at: float = 0.0
    # the machine
    vm_id: int | None = None
    own_resource: bool = False  # the user's own SSH machine (named on the spawn form)
    host: str = ""
    port: int = 22
    username: str = ""
    jump: JumpHost | None = None
    # credentials and trust: the per-spawn client key sealed with the hub's crypt key (never in
    # clear here: admins read this state through the REST API), and host keys pinned at first
    # contact
    sealed_private_key: str = Field(default="", repr=False)
    host_keys: dict[str, str] = Field(default_factory=dict)
    # the server on the machine and the tunnels to it
    workdir: str = ""
    server_port: int = 0
    local_port: int = 0
    api_port: int = 0

    @property
    def has_machine(self) -> bool:
        return self.vm_id is not None or bool(self.host) or bool(self.workdir)

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=True)

"""What the hub must remember about one server to reach, check and clean it after a restart.

Versioned (kubespawner's habit): every key has one meaning and a reason to be kept, and a state
written by an earlier release is migrated when it is loaded.
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from machines import Machine
from machines.secretbox import SecretBox

STATE_VERSION = 2


class ServerState(BaseModel):
    """Persisted in the hub database as the spawner state (JSON)."""

    version: int = Field(STATE_VERSION, description="which layout: older ones are migrated")
    machine: Machine = Field(default_factory=Machine,
                             description="the machine layer's record: reach, check, release it")
    profile: str = Field("", description="the profile's slug: its lifetime limit after a restart")
    started_at: float = Field(0.0, description="when the spawn began: the profile's lifetime")
    workdir: str = Field("", description="the server's folder on the machine: token, log, pid")
    server_port: int = Field(0, description="the server's port on the machine's loopback")
    local_port: int = Field(0, description="the hub-side tunnel port: the URL the hub stored")
    api_port: int = Field(0, description="the machine-side port to the hub API: the server's "
                                         "JUPYTERHUB_API_URL, rebuilt on the same port")
    service_ports: dict[str, int] = Field(
        default_factory=dict, description="machine-side ports of the tunnels to the hub services "
                                          "the server calls (service_urls), rebuilt on the same ports")
    notice: str = Field("", description="why the user's last server ended or failed, shown on "
                                        "the next spawn page (kept when the rest is cleared)")
    notice_log: str = Field("", description="the last lines of that server's log, for the user")

    def dump(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=False)

    @classmethod
    def load(cls, raw: dict | None, box: SecretBox) -> "ServerState":
        """A stored state of any release as this version (empty: a fresh state)."""
        raw = dict(raw or {})
        if not raw or raw.get("version") == STATE_VERSION:
            return cls(**{k: v for k, v in raw.items() if k in cls.model_fields})
        return cls._from_v1(raw, box)

    @classmethod
    def _from_v1(cls, raw: dict, box: SecretBox) -> "ServerState":
        """Release 1 kept everything flat; its ``profile`` meant "own-resource" for a user's own
        machine, and its per-spawn private key was stored in clear."""
        own = raw.get("profile") == "own-resource" or bool(raw.get("own_resource"))
        sealed = raw.get("sealed_private_key") or (
            box.seal(raw["private_key"]) if raw.get("private_key") else "")
        machine = Machine(
            provider=raw.get("provider", ""), start_id=raw.get("start_id", ""),
            vm_id=raw.get("vm_id"), own_resource=own, host=raw.get("host", ""),
            port=raw.get("port", 22), username=raw.get("username", ""), jump=raw.get("jump"),
            sealed_private_key=sealed, host_keys=raw.get("host_keys") or {},
        )
        return cls(machine=machine, profile="" if own else raw.get("profile", ""),
                   started_at=raw.get("started_at", 0.0), workdir=raw.get("workdir", ""),
                   server_port=raw.get("server_port", 0), local_port=raw.get("local_port", 0),
                   api_port=raw.get("api_port", 0))

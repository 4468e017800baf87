"""Admin-defined server profiles (what a user picks on the spawn form)."""
from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationError, field_validator

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class VmProfile(BaseModel):
    """One choice on the spawn form: the size and image of the machine, and where users land."""

    slug: str = Field(description="short id used in user_options and the API")
    name: str = Field(description="title shown on the form")
    description: str = ""
    cpu: float = Field(1.0, gt=0, description="OpenNebula CPU (physical share)")
    vcpu: int = Field(1, ge=1, description="virtual CPUs")
    memory_mb: int = Field(2048, ge=128)
    template_id: int | None = Field(None, description="OpenNebula template; None = provider default")
    max_lifetime_hours: float = Field(0, ge=0, description="0 = no limit")
    default_url: str = Field("", description="landing page, e.g. /lab or /nebulahub-plot/")

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError("slug must be lowercase letters, digits, '-' or '_'")
        return v


DEFAULT_PROFILES = [
    {"slug": "small", "name": "Small", "description": "1 CPU, 2 GB: plots and notebooks",
     "cpu": 1, "vcpu": 1, "memory_mb": 2048},
]


def parse_profiles(raw: list[dict]) -> list[VmProfile]:
    """Validate the admin's ``profiles`` config; errors name the profile and field."""
    profiles = []
    for i, item in enumerate(raw or DEFAULT_PROFILES):
        try:
            profiles.append(VmProfile(**item))
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"profiles[{i}] ({item.get('slug', '?')}): {field}: {first['msg']}")
    slugs = [p.slug for p in profiles]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"profile slugs must be unique, got {slugs}")
    return profiles

"""Where jobs are kept: SQLAlchemy tables (SQLite by default, PostgreSQL by URL), changed only by
Alembic migrations (``jobforms/service/migrations``), run at service start.

Every state change of a job is a row of its own (time, from, to, reason): a job's history is
never overwritten, and a restarted service reads every live job back from here.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One job: what was asked, where it runs, where it is."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    app_id: Mapped[str] = mapped_column(String(64))
    app_name: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict] = mapped_column(JSON)          # JobRequest, as submitted
    backend: Mapped[str] = mapped_column(String(64))
    backend_id: Mapped[Optional[str]] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    account: Mapped[str] = mapped_column(String(64))
    workdir: Mapped[str] = mapped_column(Text)
    destination: Mapped[str] = mapped_column(Text, default="")  # sealed when it holds a secret
    exit_code: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    results: Mapped[list] = mapped_column(JSON, default=list)   # paths relative to workdir
    machines: Mapped[list] = mapped_column(JSON, default=list)  # cloud jobs: machine records
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    clone_of: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now,
                                                 index=True)
    transitions: Mapped[list["TransitionRow"]] = relationship(
        back_populates="job", order_by="TransitionRow.id", cascade="all, delete-orphan")


class TransitionRow(Base):
    """One state change of a job."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    source: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    target: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text, default="")
    job: Mapped[JobRow] = relationship(back_populates="transitions")


class SavedParameters(Base):
    """A user's named parameter set for an app (``last`` is the one remembered at submit)."""

    __tablename__ = "saved_parameters"

    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    values: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the current schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def open_store(url: str) -> tuple[Engine, sessionmaker]:
    """Migrate, then an engine and a session factory for ``url``."""
    migrate(url)
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine, sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(connection, _record) -> None:
    """WAL: readers never wait for a writer, and a commit is one append (a state change reaches
    the browser without waiting for a full sync); a service crash still loses nothing."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def job_dict(job: JobRow, *, with_history: bool = False) -> dict[str, Any]:
    """A job as the REST API shows it (never a secret)."""
    out = {"id": job.id, "user": job.user, "app": job.app_id, "app_name": job.app_name,
           "backend": job.backend, "state": job.state, "reason": job.reason,
           "exit_code": job.exit_code, "results": list(job.results or []),
           "parameters": (job.request or {}).get("parameters", {}),
           "resources": (job.request or {}).get("resources", {}),
           "clone_of": job.clone_of, "created": job.created_at.isoformat(),
           "updated": job.updated_at.isoformat()}
    if with_history:
        out["history"] = [{"from": t.source, "to": t.target, "at": t.at.isoformat(),
                           "reason": t.reason} for t in job.transitions]
    return out

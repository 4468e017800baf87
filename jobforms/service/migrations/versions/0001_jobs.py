"""Jobs, their transitions, saved parameter sets.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("app_name", sa.String(255), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("backend_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("workdir", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False, server_default=""),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("machines", sa.JSON, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("clone_of", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=False,
                  index=True),
        sa.Column("source", sa.String(32), nullable=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "saved_parameters",
        sa.Column("user", sa.String(255), primary_key=True),
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("saved_parameters")
    op.drop_table("transitions")
    op.drop_table("jobs")

"""Alembic's environment for the jobs database (run by ``store.migrate``)."""
from alembic import context
from sqlalchemy import create_engine

from jobforms.service.store import Base

config = context.config


def run() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()

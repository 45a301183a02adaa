"""Init container of every MLflow pod: bring the schema to head, one pod at a time.

Three `mlflow server` replicas on a fresh database race on the schema migration and two crash
(UniqueViolation on alembic_version). Each pod instead takes a PostgreSQL advisory lock, runs
`mlflow db upgrade` (a no-op once the schema is current) and releases the lock, so the first
pod migrates and the others wait, and a rolling update to a newer MLflow migrates exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy

LOCK_KEY = 7_346_617  # any constant shared by all replicas ("helius mlflow migrate")


def main() -> int:
    uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        try:
            done = subprocess.run(["mlflow", "db", "upgrade", uri], check=False)
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

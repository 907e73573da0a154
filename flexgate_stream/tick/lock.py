"""Publishers side by side take turns: an advisory lock around one repeatable-read transaction per step."""

from __future__ import annotations

from types import TracebackType

import psycopg2.extensions

LOCK_KEY = 7251002


class locked:
    """The advisory lock (session level) around one repeatable-read transaction."""

    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.conn = conn

    def __enter__(self) -> psycopg2.extensions.cursor:
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        self.conn.autocommit = False
        self.conn.set_session(isolation_level="REPEATABLE READ")
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, kind: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
                 ) -> None:
        try:
            self.cur.close()
            if kind is None:
                self.conn.commit()
            elif not self.conn.closed:  # closed: the server gave no answer, and that is the error to raise
                self.conn.rollback()
        finally:
            if not self.conn.closed:
                self.conn.autocommit = True
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


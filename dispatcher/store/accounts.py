"""Web app accounts, sessions and the audit log, over the same SQL database as the store."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from dispatcher.accounts import Role, User
from dispatcher.store.engine import SqlPart
from dispatcher.store.schema import audit_log, users, web_sessions


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    address: str
    action: str
    subject: str = ""
    detail: str = ""


class Accounts(abc.ABC):
    @abc.abstractmethod
    def add(self, name: str, role: Role, password_hash: str, now: dt.datetime) -> User: ...

    @abc.abstractmethod
    def remove(self, name: str) -> bool:
        """Delete the user and end every session of theirs."""

    @abc.abstractmethod
    def set_role(self, name: str, role: Role, now: dt.datetime) -> bool: ...

    @abc.abstractmethod
    def all_users(self) -> list[User]: ...

    @abc.abstractmethod
    def credentials(self, name: str) -> tuple[User, str] | None:
        """The user and their password hash, to check a login."""

    @abc.abstractmethod
    def start_session(self, session_id: str, user: User, expires: dt.datetime, address: str) -> None: ...

    @abc.abstractmethod
    def session_user(self, session_id: str, now: dt.datetime) -> User | None: ...

    @abc.abstractmethod
    def end_session(self, session_id: str) -> None: ...

    @abc.abstractmethod
    def audit(self, entry: AuditEntry) -> None: ...

    @abc.abstractmethod
    def audit_entries(self, before_id: int | None, limit: int) -> list[tuple[int, AuditEntry]]:
        """Newest first, in pages."""


class SqlAccounts(SqlPart, Accounts):
    def _user(self, row: object) -> User:
        return User(int(row.id), str(row.name), Role.named(str(row.role)))  # type: ignore[attr-defined]

    def add(self, name: str, role: Role, password_hash: str, now: dt.datetime) -> User:
        with self.engine.begin() as conn:
            values = {"name": name, "role": role.label, "password_hash": password_hash}
            new_id = conn.execute(
                users.insert().values(**values, created_at=now, updated_at=now).returning(users.c.id)
            ).scalar_one()
        return User(int(new_id), name, role)

    def remove(self, name: str) -> bool:
        with self.engine.begin() as conn:
            found = conn.scalar(select(users.c.id).where(users.c.name == name))
            if found is None:
                return False
            # SQLite enforces ON DELETE CASCADE only with a pragma: end the sessions explicitly.
            conn.execute(delete(web_sessions).where(web_sessions.c.user_id == found))
            conn.execute(delete(users).where(users.c.id == found))
            return True

    def set_role(self, name: str, role: Role, now: dt.datetime) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(users).where(users.c.name == name).values(role=role.label, updated_at=now)
            ).rowcount
        return bool(changed)

    def all_users(self) -> list[User]:
        with self._read() as conn:
            return [self._user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def credentials(self, name: str) -> tuple[User, str] | None:
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return None if row is None else (self._user(row), str(row.password_hash))

    def start_session(self, session_id: str, user: User, expires: dt.datetime, address: str) -> None:
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
            conn.execute(
                web_sessions.insert().values(
                    id=session_id, user_id=user.id, created_at=now, expires_at=expires, address=address[:64]
                )
            )

    def session_user(self, session_id: str, now: dt.datetime) -> User | None:
        s = web_sessions
        query = (
            select(users).join(s, s.c.user_id == users.c.id).where(s.c.id == session_id, s.c.expires_at > now)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._user(row)

    def end_session(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))

    def audit(self, entry: AuditEntry) -> None:
        with self.engine.begin() as conn:
            conn.execute(audit_log.insert().values(**entry.__dict__))

    def audit_entries(self, before_id: int | None, limit: int) -> list[tuple[int, AuditEntry]]:
        a = audit_log
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(a.c.id < before_id)
        with self._read() as conn:
            return [(int(r.id), _entry(r)) for r in conn.execute(query)]


def _entry(row: object) -> AuditEntry:
    fields = ("at", "actor", "address", "action", "subject", "detail")
    return AuditEntry(*(getattr(row, f) for f in fields))


def entries(accounts: Accounts, page: int = 500) -> Iterator[AuditEntry]:
    """The whole audit log, newest first, read in pages."""
    before: int | None = None
    while rows := accounts.audit_entries(before, page):
        for _, entry in rows:
            yield entry
        before = rows[-1][0]

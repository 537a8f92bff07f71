"""The sandbox's memory on disk: messages, owned numbers, Messaging Services and the STOP list
in a small SQLite file of its own, so a sandbox started again on the same directory knows what
it had accepted before it died, as Twilio would.

Every write is its own transaction, done before the REST answer leaves. A create, a number, a
service or an opt-out is committed with `synchronous=FULL` (fsync'd: it survives a power cut);
a status change or an answered callback with `synchronous=NORMAL` (in the OS's hands: it survives
a `kill -9`, and losing it to a power cut only replays a status and its callback, which the
gateway takes as a duplicate). Only the standard library: the sandbox stays self-contained.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "sandbox.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    direction TEXT NOT NULL,
    to_number TEXT NOT NULL,
    status TEXT NOT NULL,
    answered TEXT,  -- the last status whose callback the receiver answered with 2xx
    data TEXT NOT NULL  -- every field of the message, JSON
);
CREATE INDEX IF NOT EXISTS messages_to ON messages (account_sid, to_number);
CREATE TABLE IF NOT EXISTS numbers (
    account_sid TEXT NOT NULL,
    number TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (account_sid, number)
);
CREATE TABLE IF NOT EXISTS services (
    account_sid TEXT NOT NULL,
    sid TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (account_sid, sid)
);
CREATE TABLE IF NOT EXISTS opted_out (
    account_sid TEXT NOT NULL,
    phone TEXT NOT NULL,
    number TEXT NOT NULL,
    PRIMARY KEY (account_sid, phone, number)
);
"""
BUSY_TIMEOUT_MS = 5000  # another process on the same directory (a second `gateway web`)


@dataclass(frozen=True)
class Sent:
    sid: str
    status: str


@dataclass
class StoredMessage:
    data: dict[str, Any]
    answered: str | None  # status of the last callback answered 2xx


@dataclass
class StoredState:
    """What one account had when the sandbox stopped."""

    messages: list[StoredMessage] = field(default_factory=list)
    numbers: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    opted_out: list[tuple[str, str]] = field(default_factory=list)


class SandboxStore:
    """One SQLite file (`<directory>/sandbox.sqlite3`) holding one or more accounts' state."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        # Autocommit: each statement below is one durable transaction.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        self._durable: bool | None = None

    def _conn(self, durable: bool) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the sandbox store is closed")
        if self._durable is not durable:
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        return self._db

    def load(self, account_sid: str) -> StoredState:
        """Everything stored for the account, messages in the order they were created."""
        db = self._conn(durable=True)
        state = StoredState()
        for data, answered in db.execute(
            "SELECT data, answered FROM messages WHERE account_sid = ? ORDER BY rowid",
            (account_sid,),
        ):
            state.messages.append(StoredMessage(json.loads(data), answered))
        query = "SELECT data FROM {} WHERE account_sid = ? ORDER BY rowid"
        state.numbers = [
            json.loads(row[0]) for row in db.execute(query.format("numbers"), (account_sid,))
        ]
        state.services = [
            json.loads(row[0]) for row in db.execute(query.format("services"), (account_sid,))
        ]
        state.opted_out = [
            (str(phone), str(number))
            for phone, number in db.execute(
                "SELECT phone, number FROM opted_out WHERE account_sid = ? ORDER BY rowid",
                (account_sid,),
            )
        ]
        return state

    def add_message(self, account_sid: str, data: dict[str, Any]) -> None:
        """A message Twilio has taken (a create or an inbound text): fsync'd before answering."""
        self._conn(durable=True).execute(
            "INSERT OR REPLACE INTO messages (sid, account_sid, direction, to_number, status, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                data["sid"],
                account_sid,
                data["direction"],
                data["to"],
                data["status"],
                json.dumps(data),
            ),
        )

    def update_message(self, data: dict[str, Any]) -> None:
        """A status change (sent, delivered...) of a stored message."""
        self._conn(durable=False).execute(
            "UPDATE messages SET status = ?, data = ? WHERE sid = ?",
            (data["status"], json.dumps(data), data["sid"]),
        )

    def callback_answered(self, sid: str, status: str) -> None:
        """The receiver took the callback of this status: it is not owed after a restart."""
        self._conn(durable=False).execute(
            "UPDATE messages SET answered = ? WHERE sid = ?", (status, sid)
        )

    def put_number(self, account_sid: str, number: str, data: dict[str, Any]) -> None:
        self._conn(durable=True).execute(
            "INSERT OR REPLACE INTO numbers (account_sid, number, data) VALUES (?, ?, ?)",
            (account_sid, number, json.dumps(data)),
        )

    def put_service(self, account_sid: str, sid: str, data: dict[str, Any]) -> None:
        self._conn(durable=True).execute(
            "INSERT OR REPLACE INTO services (account_sid, sid, data) VALUES (?, ?, ?)",
            (account_sid, sid, json.dumps(data)),
        )

    def set_opted_out(self, account_sid: str, phone: str, number: str, opted_out: bool) -> None:
        if opted_out:
            statement = (
                "INSERT OR IGNORE INTO opted_out (account_sid, phone, number) VALUES (?, ?, ?)"
            )
        else:
            statement = "DELETE FROM opted_out WHERE account_sid = ? AND phone = ? AND number = ?"
        self._conn(durable=True).execute(statement, (account_sid, phone, number))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def outbound_per_phone(directory: Path, account_sid: str | None = None) -> dict[str, list[Sent]]:
    """The outbound messages a store holds, per phone (`To`), in the order created: every
    Messages.create the sandbox accepted, with its SID and its status now. For drills that read
    a directory another process writes (only SELECTs)."""
    db = sqlite3.connect(directory / FILE_NAME)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        query = "SELECT to_number, sid, status FROM messages WHERE direction = 'outbound-api'"
        args: tuple[str, ...] = ()
        if account_sid is not None:
            query += " AND account_sid = ?"
            args = (account_sid,)
        found: dict[str, list[Sent]] = {}
        for phone, sid, status in db.execute(query + " ORDER BY rowid", args):
            found.setdefault(str(phone), []).append(Sent(str(sid), str(status)))
        return found
    finally:
        db.close()

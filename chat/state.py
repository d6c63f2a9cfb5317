"""The bot's own records in one SQLite file (WAL): each chat's recent turns, so follow-ups
survive a restart, and the answers sent with the 👍/👎 votes on them.

A file that is locked, damaged or unwritable costs these records, never an answer: each kind
of trouble is logged once, history falls back to memory, and votes are not taken.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chat.history import ChatHistories
from retrieval.answering.answer import Answer
from retrieval.answering.conversation import Turn

log = logging.getLogger("tanya")

# How long a write waits for another process's lock before giving up (an answer waits on it).
BUSY_SECONDS = 1.0
# After a write fails (a lock held elsewhere, a full disk), writes are skipped this long rather
# than each answer waiting BUSY_SECONDS again, one chat after another.
PAUSE_SECONDS = 30.0
# Answers nobody voted on are kept this long, so their buttons still work for a while.
UNVOTED_ANSWER_DAYS = 30
# Different troubles logged at most; then the store stays quiet.
MAX_PROBLEMS_LOGGED = 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    at REAL NOT NULL,
    turn TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_chat ON turns (chat_id, id);
CREATE INDEX IF NOT EXISTS turns_by_time ON turns (at);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    chat_id INTEGER NOT NULL,
    user_id INTEGER,
    question TEXT NOT NULL,
    read_as TEXT NOT NULL,
    kind TEXT NOT NULL,
    answer TEXT,
    quotes TEXT NOT NULL,
    history TEXT NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    answer_id INTEGER NOT NULL REFERENCES answers (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    vote INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);
"""

VOTES = {"up": 1, "down": -1}


@dataclass(frozen=True)
class VotedAnswer:
    """An answer as stored, with its votes: what `tanya-feedback export` writes out."""

    id: int
    question: str
    read_as: str
    kind: str
    answer: str | None
    quotes: tuple[dict, ...]
    history: tuple[str, ...]
    up: int
    down: int


def quotes_record(answer: Answer) -> list[dict]:
    """The quoted passages as stored: where each is from, its text, its marked parts."""
    return [
        {
            "doc_id": q.doc_id,
            "title": q.title,
            "paragraph": q.paragraph,
            "text": q.text,
            "highlight": q.highlight,
            "answer": q.answer,
        }
        for q in answer.quotes
    ]


class StateStore:
    """Chat histories and feedback in an SQLite file; memory (history only) when it fails."""

    def __init__(
        self,
        path: Path,
        history_size: int,
        history_minutes: float = 0.0,
        clock: Callable[[], float] = time.time,
    ):
        self.path = path
        self.history_size = history_size
        self.history_minutes = history_minutes
        self.clock = clock
        self._memory = ChatHistories(history_size)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._logged: set[str] = set()
        self._paused_until = 0.0

    # Life cycle

    def open(self) -> bool:
        """Open (or create) the file; False, after one log line, when it cannot be used."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            self._trouble(exc)
            return False
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            if not _has_schema(db):
                db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            db.close()
            self._trouble(exc)
            return False
        with self._lock:
            self._db = db
        return True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def available(self) -> bool:
        """Whether the file is open (a later write may still fail)."""
        return self._db is not None

    def _trouble(self, exc: BaseException) -> None:
        problem = str(exc) or type(exc).__name__
        if problem in self._logged or len(self._logged) >= MAX_PROBLEMS_LOGGED:
            return
        self._logged.add(problem)
        log.warning(
            "state database %s cannot be used (%s); answering without saved history and feedback",
            self.path,
            problem,
        )

    def _run(self, work: Callable[[sqlite3.Connection], object]) -> tuple[bool, object]:
        """Run work on the open file in one transaction: (True, its result), or (False, None)
        after logging the trouble."""
        with self._lock:
            db = self._db
            if db is None or time.monotonic() < self._paused_until:
                return False, None
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return True, result
            except sqlite3.Error as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # nothing left to undo
                self._paused_until = time.monotonic() + PAUSE_SECONDS
                self._trouble(exc)
                return False, None

    # History

    def earlier(self, chat_id: int) -> tuple[Turn, ...]:
        """The chat's recent turns, oldest first (at most history_size, none too old)."""
        if self.history_size == 0:
            return ()
        since = self.clock() - self.history_minutes * 60 if self.history_minutes else -1.0
        with self._lock:
            db = self._db
            rows = None
            if db is not None:
                try:
                    rows = db.execute(
                        "SELECT turn FROM turns WHERE chat_id = ? AND at >= ? "
                        "ORDER BY id DESC LIMIT ?",
                        (chat_id, since, self.history_size),
                    ).fetchall()
                except sqlite3.Error as exc:
                    self._trouble(exc)
        if rows is None:
            return self._memory.earlier(chat_id)
        turns = []
        for (text,) in reversed(rows):
            try:
                turns.append(Turn.from_dict(json.loads(text)))
            except (ValueError, TypeError):
                continue  # a row written by hand or by a future version: not context
        return tuple(turns)

    def record(self, chat_id: int, turn: Turn) -> None:
        """Keep a turn of the chat; older turns beyond history_size or history_minutes go."""
        if self.history_size == 0:
            return
        self._memory.record(chat_id, turn)
        now = self.clock()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO turns (chat_id, at, turn) VALUES (?, ?, ?)",
                (chat_id, now, json.dumps(turn.to_dict(), ensure_ascii=False)),
            )
            db.execute(
                "DELETE FROM turns WHERE chat_id = ? AND id NOT IN "
                "(SELECT id FROM turns WHERE chat_id = ? ORDER BY id DESC LIMIT ?)",
                (chat_id, chat_id, self.history_size),
            )
            if self.history_minutes:
                db.execute("DELETE FROM turns WHERE at < ?", (now - self.history_minutes * 60,))

        self._run(write)

    def forget(self, chat_id: int) -> None:
        """Clear the chat's history."""
        self._memory.forget(chat_id)
        self._run(lambda db: db.execute("DELETE FROM turns WHERE chat_id = ?", (chat_id,)))

    # Feedback

    def record_answer(
        self, chat_id: int, user_id: int | None, answer: Answer, history: Sequence[Turn] = ()
    ) -> int | None:
        """Keep an answer sent to a chat, so votes on it can be taken; its id, or None when
        the file cannot take it (the answer then goes without buttons)."""
        now = self.clock()

        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO answers (at, chat_id, user_id, question, read_as, kind, answer, "
                "quotes, history, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    chat_id,
                    user_id,
                    answer.question,
                    answer.reading,
                    answer.kind,
                    answer.turn().answer,
                    json.dumps(quotes_record(answer), ensure_ascii=False),
                    json.dumps([t.question for t in history], ensure_ascii=False),
                    answer.version,
                ),
            )
            db.execute(
                "DELETE FROM answers WHERE at < ? AND id NOT IN (SELECT answer_id FROM votes)",
                (now - UNVOTED_ANSWER_DAYS * 86_400,),
            )
            return int(cursor.lastrowid)

        ok, answer_id = self._run(write)
        return answer_id if ok else None  # type: ignore[return-value]

    def vote(self, answer_id: int, user_id: int, vote: str) -> str | None:
        """Record a user's 👍 ("up") or 👎 ("down") on an answer, replacing their earlier one:
        "saved", "changed", "same", or None (an unknown answer, or the file failed)."""
        value = VOTES[vote]
        now = self.clock()

        def write(db: sqlite3.Connection) -> str | None:
            if db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)).fetchone() is None:
                return None
            row = db.execute(
                "SELECT vote FROM votes WHERE answer_id = ? AND user_id = ?", (answer_id, user_id)
            ).fetchone()
            db.execute(
                "INSERT INTO votes (answer_id, user_id, vote, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (answer_id, user_id) DO UPDATE SET vote = excluded.vote, "
                "at = excluded.at",
                (answer_id, user_id, value, now),
            )
            if row is None:
                return "saved"
            return "same" if row[0] == value else "changed"

        ok, outcome = self._run(write)
        return outcome if ok else None  # type: ignore[return-value]

    def votes(self, answer_id: int) -> dict[int, int]:
        """Each user's vote on an answer (+1 or -1)."""
        ok, rows = self._run(
            lambda db: db.execute(
                "SELECT user_id, vote FROM votes WHERE answer_id = ?", (answer_id,)
            ).fetchall()
        )
        return dict(rows) if ok else {}  # type: ignore[arg-type]


def _has_schema(db: sqlite3.Connection) -> bool:
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"turns", "answers", "votes"} <= names


def voted_down(path: Path) -> list[VotedAnswer]:
    """The answers at least one user voted 👎, oldest first, read from the state file
    (opened read-only); sqlite3.Error when it cannot be read."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)
    try:
        rows = db.execute(
            "SELECT a.id, a.question, a.read_as, a.kind, a.answer, a.quotes, a.history, "
            "SUM(v.vote > 0), SUM(v.vote < 0) FROM answers a JOIN votes v ON v.answer_id = a.id "
            "GROUP BY a.id HAVING SUM(v.vote < 0) > 0 ORDER BY a.id"
        ).fetchall()
    finally:
        db.close()
    return [
        VotedAnswer(
            id=row[0],
            question=row[1],
            read_as=row[2],
            kind=row[3],
            answer=row[4],
            quotes=tuple(json.loads(row[5])),
            history=tuple(json.loads(row[6])),
            up=int(row[7]),
            down=int(row[8]),
        )
        for row in rows
    ]

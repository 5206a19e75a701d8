"""Reads and writes of the durable job record. Terminal transitions are conditional updates, so the
database, not Python, decides which of two racing writers (a worker finishing, an owner cancelling) wins.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from jobpulse.db.models import ImportRow, Job, Tracked, Video
from jobpulse.errors import InvalidRequest
from jobpulse.ids import is_job_id
from jobpulse.states import TERMINAL_STATES, State

__all__ = ["JobRepository", "NewJob", "RecordRepository", "VideoRepository", "utcnow"]

_ACTIVE = [s.value for s in State if not s.terminal and s is not State.UNKNOWN]
_TERMINAL = [s.value for s in TERMINAL_STATES]
# A batch of rows as two parameters, their numbers (an int array) and their data (one JSON array), zipped
# back into rows by ROWS FROM.
_INSERT_BATCH = (
    "INSERT INTO import_rows (job_id, row_number, data) SELECT %s, number, data "
    "FROM ROWS FROM (unnest(%s::int[]), json_array_elements(%s::json)) AS batch (number, data)"
)


def _insert_batch(cursor: Any, job_id: str, batch: list[tuple[int, dict[str, Any]]]) -> int:
    """One batch as one statement on a psycopg cursor (COPY, measured: 25% slower for the same rows, as
    its text must be cut into lines in Python, where the database splits the array on its own core)."""
    if not batch:
        return 0
    numbers, records = zip(*batch, strict=True)
    array = "{" + ",".join(map(str, numbers)) + "}"
    cursor.execute(_INSERT_BATCH, (job_id, array, orjson.dumps(records).decode()))
    return len(batch)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored moment is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a submission knows about a job before it is queued."""

    id: str
    kind: str
    owner: str
    options: dict[str, Any]
    input_filename: str
    input_size_bytes: int
    input_content_type: str | None
    retry_of: str | None = None  # the FAILED job this one retries
    input_data: dict[str, Any] | None = None  # a JSON kind's input document


R = TypeVar("R", bound=Tracked)


def _encode_cursor(job: Tracked) -> str:
    created = as_utc(job.created_at)
    assert created is not None
    raw = f"{created.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MAX_CURSOR_CHARS = 128  # an encoded cursor is ~90 characters


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a listing cursor names; 400 for anything :func:`_encode_cursor` did not make
    (checked here, so nothing odd, such as a NUL, reaches the database)."""
    invalid = InvalidRequest("The cursor is not valid.", code="invalid_cursor")
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        text, _, job_id = raw.partition("|")
        created = datetime.fromisoformat(text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid from exc
    if created.tzinfo is None or not is_job_id(job_id):
        raise invalid
    return created, job_id


class RecordRepository(Generic[R]):
    """One table of tracked records (``jobs`` or ``videos``): create, read, list, and the transitions."""

    model: type[R]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

    def _new(self, new: NewJob) -> R:
        factory: Any = self.model  # a mapped class: its constructor takes the columns
        record: R = factory(
            id=new.id,
            owner=new.owner,
            state=State.PENDING.value,
            percent=None,
            options=new.options,
            input_filename=new.input_filename,
            input_size_bytes=new.input_size_bytes,
            input_content_type=new.input_content_type,
            input_data=new.input_data,
            attempts=0,
            retry_of=new.retry_of,
            created_at=utcnow(),
        )
        return record

    def create(self, new: NewJob) -> R:
        """Insert a PENDING record."""
        record = self._new(new)
        with self.session() as session, session.begin():
            session.add(record)
        return record

    def get(self, record_id: str, *, owner: str | None = None) -> R | None:
        """The record, if it exists (and belongs to ``owner`` when given)."""
        with self.session() as session:
            record = session.get(self.model, record_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    def list_owned(
        self, owner: str, *, limit: int, cursor: str | None, kinds: Sequence[str] | None = None
    ) -> tuple[list[R], str | None]:
        """The owner's records (of ``kinds``, on the jobs table), newest first, and the next page's cursor."""
        model: Any = self.model
        query = select(self.model).where(model.owner == owner)
        if kinds is not None:
            query = query.where(model.kind.in_(kinds))
        if cursor:
            created, record_id = _decode_cursor(cursor)
            query = query.where(
                or_(model.created_at < created, and_(model.created_at == created, model.id < record_id))
            )
        query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
        with self.session() as session:
            records = list(session.scalars(query))
        next_cursor = _encode_cursor(records[limit - 1]) if len(records) > limit else None
        return records[:limit], next_cursor

    def delete(self, record_id: str) -> None:
        """Remove a record (one that could not be queued, or one its owner deleted)."""
        model: Any = self.model
        with self.session() as session, session.begin():
            session.execute(delete(self.model).where(model.id == record_id))

    def start(self, record_id: str, state: State, *, count: bool = True) -> int | None:
        """Move an active record to ``state`` (RUNNING or PROCESSING), counting the attempt unless
        ``count`` is false (the retry of a start that met a Redis or database error); returns the
        attempt's number (1 for the first start).

        None when it is already terminal (cancelled while queued, or a duplicate delivery).
        """
        now = utcnow()
        with self.session() as session, session.begin():
            record = session.get(self.model, record_id, with_for_update=True)
            if record is None or record.state not in _ACTIVE:
                return None
            record.state = state.value
            record.attempts += 1 if count or not record.attempts else 0
            record.started_at = record.started_at or now
            return record.attempts

    def active(self, *, limit: int = 10_000) -> list[R]:
        """Records that are not terminal (queued, running, or waiting for another queue), oldest first."""
        model: Any = self.model
        query = select(self.model).where(model.state.in_(_ACTIVE)).order_by(model.created_at).limit(limit)
        with self.session() as session:
            return list(session.scalars(query))

    def finished_since(self, since: datetime, *, limit: int = 10_000) -> list[R]:
        """Terminal records that ended at or after ``since``, oldest first."""
        model: Any = self.model
        query = (
            select(self.model)
            .where(model.finished_at >= since, model.state.in_(_TERMINAL))
            .order_by(model.finished_at)
            .limit(limit)
        )
        with self.session() as session:
            return list(session.scalars(query))

    def set_state(self, record_id: str, state: State, **columns: Any) -> bool:
        """Record a non-terminal transition (e.g. FALLBACK_TO_GPU), or write ``columns`` of an active
        record (what a video's probe found); False if the record is terminal."""
        model: Any = self.model
        with self.session() as session, session.begin():
            done = session.execute(
                update(self.model)
                .where(model.id == record_id, model.state.in_(_ACTIVE))
                .values(state=state.value, **columns)
            )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def finish(
        self,
        record_id: str,
        state: State,
        *,
        percent: float | None = None,
        error_reason: str | None = None,
        columns: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> bool:
        """Record a terminal state (and the kind's ``columns``), unless the record is terminal already:
        the first writer wins."""
        assert state.terminal
        model: Any = self.model
        conditions = [model.id == record_id, model.state.in_(_ACTIVE)]
        if owner is not None:
            conditions.append(model.owner == owner)
        values: dict[str, Any] = {"state": state.value, "finished_at": utcnow(), "error_reason": error_reason}
        if percent is not None:
            values["percent"] = percent
        values.update(columns or {})
        with self.session() as session, session.begin():
            done = session.execute(update(self.model).where(*conditions).values(**values))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def expired_page(
        self, before: datetime, *, after: tuple[datetime | None, str] | None, limit: int
    ) -> list[R]:
        """Terminal records that ended before ``before`` (what retention removes), oldest first, one page
        at a time: the records after ``after`` (the last page's ``(finished_at, id)``), so a pass that
        keeps what it reads (a dry run) still moves on."""
        model: Any = self.model
        query = select(self.model).where(model.finished_at < before, model.state.in_(_TERMINAL))
        if after is not None:
            finished, record_id = after
            query = query.where(
                or_(model.finished_at > finished, and_(model.finished_at == finished, model.id > record_id))
            )
        query = query.order_by(model.finished_at, model.id).limit(limit)
        with self.session() as session:
            return list(session.scalars(query))


class JobRepository(RecordRepository[Job]):
    """The ``jobs`` table, and the ``import_rows`` of spreadsheet jobs."""

    model = Job

    def _new(self, new: NewJob) -> Job:
        job = super()._new(new)
        job.kind = new.kind
        return job

    def delete(self, record_id: str) -> None:
        """Remove a job and its imported rows."""
        with self.session() as session, session.begin():
            session.execute(delete(ImportRow).where(ImportRow.job_id == record_id))
            session.execute(delete(Job).where(Job.id == record_id))

    def delete_rows(self, job_id: str) -> None:
        """Forget the rows of an earlier, interrupted attempt (or of a cancelled import)."""
        with self.session() as session, session.begin():
            session.execute(delete(ImportRow).where(ImportRow.job_id == job_id))

    @contextmanager
    def row_inserter(self, job_id: str) -> Iterator[Callable[[list[tuple[int, dict[str, Any]]]], int]]:
        """:meth:`insert_rows` for one import's batches, callable from any one thread. On PostgreSQL
        (psycopg) it keeps one autocommit connection from the first batch to the last: a checkout per
        batch cost the pool's ping, a round trip, and its Python ran in the writer thread, taking the
        interpreter lock from the thread that parses."""
        if not self._psycopg():
            yield partial(self.insert_rows, job_id)
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:
                yield partial(_insert_batch, cursor, job_id)

    def _psycopg(self) -> bool:
        return self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg"

    def insert_rows(self, job_id: str, rows: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Insert a batch of valid rows: one statement on PostgreSQL (psycopg), one executemany elsewhere.

        Rows are serialized with orjson here, not by the ORM's JSON type: it is most of the import's cost.
        On PostgreSQL the whole batch is one orjson call, a JSON array that the server splits into rows
        (``json_array_elements`` keeps each element's text as it is): a ``dumps`` per row cost several
        times more than the serialization itself, and the splitting runs in the database's process, off
        the worker's interpreter lock.
        """
        if self._psycopg():
            batch = rows if isinstance(rows, list) else list(rows)
            # One statement is atomic on its own: in autocommit it needs no BEGIN and COMMIT, each a round
            # trip, and each a wait for the interpreter lock in the writer thread while the job parses.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cursor:
                    return _insert_batch(cursor, job_id, batch)
        dumps = orjson.dumps
        # Each row's JSON is used up as soon as it is made: holding a whole batch of orjson's outputs
        # made every call take fresh memory from the allocator.
        params = [(job_id, number, dumps(data).decode()) for number, data in rows]
        if not params:
            return 0
        with self.engine.begin() as conn:
            mark = "%s" if self.engine.dialect.paramstyle == "format" else "?"
            conn.exec_driver_sql(
                f"INSERT INTO import_rows (job_id, row_number, data) VALUES ({mark}, {mark}, {mark})", params
            )
        return len(params)

    def review(
        self,
        job_id: str,
        *,
        owner: str,
        state: State,
        result: dict[str, Any],
        error_reason: str | None,
    ) -> bool:
        """Resolve the owner's REVIEW_REQUIRED job to ``state`` (SUCCESS or REJECTED_BAD_INPUT) with its
        reviewed ``result``: a conditional update, so of two racing reviews exactly one wins (False for
        the other, and for a job that is not under review)."""
        assert state in (State.SUCCESS, State.REJECTED_BAD_INPUT)
        with self.session() as session, session.begin():
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.owner == owner, Job.state == State.REVIEW_REQUIRED.value)
                .values(state=state.value, result=result, error_reason=error_reason)
            )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def rows(self, job_id: str, *, after: int, limit: int) -> list[ImportRow]:
        """Imported rows after row number ``after``, in file order."""
        query = (
            select(ImportRow)
            .where(ImportRow.job_id == job_id, ImportRow.row_number > after)
            .order_by(ImportRow.row_number)
            .limit(limit)
        )
        with self.session() as session:
            return list(session.scalars(query))

    def count_rows(self, job_ids: Sequence[str]) -> int:
        """How many imported rows the jobs ``job_ids`` have (what removing them removes)."""
        if not job_ids:
            return 0
        query = select(func.count()).select_from(ImportRow).where(ImportRow.job_id.in_(job_ids))
        with self.session() as session:
            return int(session.scalar(query) or 0)


class VideoRepository(RecordRepository[Video]):
    """The ``videos`` table."""

    model = Video

"""The one way to the database: the runtime pool, its executor and the request transaction.

Every request runs in exactly one transaction. The acting user is set inside it by the SQL
function `app_act_as(uuid)` (transaction-local `set_config`), so the setting dies with the
transaction and a pooled connection never carries one request's user into the next. The
session lookup (`app_authenticate`) and the webhook's target lookup call that function in
their own round trip; everything else acts through `act_as` below.

Statements are SQLAlchemy Core, built once where they can be; this module compiles each one
once (for asyncpg: `$n` placeholders and the names in their order) and runs it on the
driver itself. SQLAlchemy's execution layer around asyncpg (greenlet hop, execution context,
cursor result) cost more than the statements' own work on the hottest routes
(BENCHMARKS.md). Errors come out as SQLAlchemy's DB-API exceptions, as before: the same
classes, the driver's error as `orig.__cause__`, and never a bound value in the message.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import Enum, Executable, Float, Numeric, TypeDecorator, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import ValuesBase

ACT_AS = text("SELECT public.app_act_as(:user_id)")

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_DBAPI = PGDialect_asyncpg.import_dbapi()  # type: ignore[no-untyped-call]
# The driver's exception classes and SQLAlchemy's DB-API ones, as SQLAlchemy maps them;
# and a connection caught in a state it cannot leave (the server dropping it while the pool
# lent it out) is the connection's failure, as a closed one is.
_TRANSLATE: dict[type[BaseException], Callable[..., Exception]] = {
    **_DBAPI._asyncpg_error_translate,
    asyncpg.InternalClientError: _DBAPI.InterfaceError,
}
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class Row(asyncpg.Record):  # type: ignore[misc]
    """A result row: a tuple of the columns in order (iteration, indexing, `_make`) whose
    columns are also attributes, as SQLAlchemy's rows; asyncpg builds it directly."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(self.items())

    def _asdict(self) -> dict[str, Any]:
        return dict(self.items())

    @property
    def _fields(self) -> tuple[str, ...]:
        return tuple(self.keys())


class Rows(list[Any]):
    """A result's scalars or mappings: a list, with SQLAlchemy's accessors for them."""

    def all(self) -> list[Any]:
        return list(self)

    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        if len(self) != 1:
            raise sa_exc.NoResultFound("Not exactly one row where one was required")
        return self[0]

    def one_or_none(self) -> Any:
        if len(self) > 1:
            raise sa_exc.MultipleResultsFound("More than one row where one or none was required")
        return self[0] if self else None


class Result:
    """A statement's rows, with the accessors of SQLAlchemy's result the code uses."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def all(self) -> list[Row]:
        return self.rows

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def one_or_none(self) -> Row | None:
        if len(self.rows) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return self.rows[0] if self.rows else None

    def one(self) -> Row:
        if len(self.rows) != 1:
            if self.rows:
                raise sa_exc.MultipleResultsFound(
                    "Multiple rows were found when exactly one was required"
                )
            raise sa_exc.NoResultFound("No row was found when one was required")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> Rows:
        return Rows(row[0] for row in self.rows)

    def mappings(self) -> Rows:
        return Rows(dict(row.items()) for row in self.rows)


_REQUIRED = object()
# How long closing the pool waits for connections still lent out.
_CLOSE_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement as asyncpg runs it: its SQL, and for each `$n` where the value comes
    from (the parameter's name, else the value the statement holds) and how it is bound."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...] | None
    returns_rows: bool

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, default in zip(self.names, self.defaults, strict=True):
            value = parameters.get(name, default)
            if value is _REQUIRED:
                raise sa_exc.ArgumentError(f"A value is required for bind parameter {name!r}")
            values.append(value)
        if self.processors is not None:
            for i, process in enumerate(self.processors):
                if process is not None and values[i] is not None:
                    values[i] = process(values[i])
        return values


def _compile(statement: Executable, column_keys: list[str] | None, many: bool) -> _Compiled:
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=_DIALECT, column_keys=column_keys, for_executemany=many
    )
    assert isinstance(compiled, SQLCompiler)
    if compiled.post_compile_params or compiled.literal_execute_params:
        # Expanding IN lists render their SQL per call: `= ANY(:array)` is one statement.
        raise sa_exc.ArgumentError("Expanding parameters are not supported: use = ANY(array)")
    for column in compiled._result_columns:
        kind = column[3]
        if isinstance(kind, (TypeDecorator, Enum)) or (
            isinstance(kind, Numeric) and not kind.asdecimal and not isinstance(kind, Float)
        ):
            # Rows come as the driver decodes them, with no result processing.
            raise sa_exc.ArgumentError(f"Column type {kind!r} needs a result processor")
    unescaped = {escaped: name for name, escaped in (compiled.escaped_bind_names or {}).items()}
    names = tuple(unescaped.get(name, name) for name in compiled.positiontup or ())
    defaults = []
    for position in compiled.positiontup or ():
        bind = compiled.binds[position]
        if bind.callable is not None:
            raise sa_exc.ArgumentError(f"Bind parameter {bind.key!r} has a callable value")
        if bind.required:
            defaults.append(_REQUIRED)
        else:
            defaults.append(bind.value)
    processors: tuple[Callable[[Any], Any] | None, ...] = tuple(
        compiled._bind_processors.get(name)  # type: ignore[misc]
        for name in compiled.positiontup or ()
    )
    return _Compiled(
        sql=compiled.string,
        names=names,
        defaults=tuple(defaults),
        processors=processors if any(processors) else None,
        returns_rows=bool(
            compiled.effective_returning
            or not (compiled.isinsert or compiled.isupdate or compiled.isdelete)
        ),
    )


class _StatementCache:
    """Compiled forms by statement object: a statement built once (a module constant) is
    compiled once; one built per call is compiled per call, and forgotten with it."""

    def __init__(self) -> None:
        self._by_id: dict[tuple[int, tuple[str, ...] | None, bool], tuple[Any, _Compiled]] = {}

    def get(
        self, statement: Executable, parameters: Mapping[str, Any] | None, many: bool
    ) -> _Compiled:
        # INSERT and UPDATE without .values() take their columns from the parameters.
        keys = (
            tuple(sorted(parameters)) if isinstance(statement, ValuesBase) and parameters else None
        )
        key = (id(statement), keys, many)
        entry = self._by_id.get(key)
        if entry is not None and entry[0]() is statement:
            return entry[1]
        compiled = _compile(statement, list(keys) if keys is not None else None, many)
        cache = self._by_id
        self._by_id[key] = (weakref.ref(statement, lambda _: cache.pop(key, None)), compiled)
        return compiled


_STATEMENTS = _StatementCache()


def _raise_translated(
    error: Exception, sql: str, connection: asyncpg.Connection | None
) -> NoReturn:
    """Re-raise the driver's error as SQLAlchemy's DB-API exception for it (never quoting
    the bound values); errors that are not the database's (OSError, timeouts) pass as they
    are."""
    for kind in type(error).__mro__:
        translate = _TRANSLATE.get(kind)
        if translate is not None:
            orig = translate(error.args[0] if error.args else str(error), error)
            orig.__cause__ = error
            invalidated = connection is not None and connection.is_closed()
            wrapped = sa_exc.DBAPIError.instance(
                sql,
                None,
                orig,
                _DBAPI.Error,
                hide_parameters=True,
                connection_invalidated=invalidated,
                dialect=_DIALECT,
            )
            raise wrapped from error
    raise error


def _connect_arguments(url: URL) -> dict[str, Any]:
    _, options = _DIALECT.create_connect_args(url)  # type: ignore[no-untyped-call]
    # SQLAlchemy's own statement cache setting; asyncpg has its own (below).
    options.pop("prepared_statement_cache_size", None)
    options.pop("prepared_statement_name_func", None)
    if url.query.get("prepared_statement_cache_size") == "0":
        # Behind a transaction pooler (see `app_url`): every statement unnamed, parsed in
        # the transaction that runs it.
        options["statement_cache_size"] = 0
    return dict(options)


def _jsonb_encode(value: str) -> bytes:
    return b"\x01" + value.encode()


def _jsonb_decode(value: bytes) -> Any:
    return json.loads(value[1:])


async def _set_up(connection: asyncpg.Connection) -> None:
    """JSON as SQLAlchemy's JSON types bind it (already serialised), decoded on the way out."""
    await connection.set_type_codec(
        "json", encoder=str.encode, decoder=json.loads, schema="pg_catalog", format="binary"
    )
    await connection.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )


async def _keep_state(connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back: every setting the app makes is
    transaction-local (`app_act_as`, advisory locks), and the transaction has ended, so
    asyncpg's RESET ALL round trip would undo nothing."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    in_use: int
    size: int
    max_size: int


class Database:
    """The runtime role's pool: `pool_size + max_overflow` connections at most, opened as
    requests need them (none at start-up); at most `pool_size` are kept open idle."""

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        acquire_timeout: float = 30.0,
    ) -> None:
        self._options = _connect_arguments(url)
        self.pool_size = pool_size
        self._returning = 0
        self.max_size = pool_size + max_overflow
        # Waiting longer for a connection than this is a 503 (TimeoutError is an OSError).
        self.acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self.max_size,
                    init=_set_up,
                    reset=_keep_state,
                    record_class=Row,
                    **self._options,
                )
            return self._pool

    async def acquire(self) -> tuple[Any, asyncpg.Connection]:
        """A connection from the pool: the pool's lease (to give back) and the connection
        itself, which keeps answering `is_closed()` once the server has dropped it."""
        pool = self._pool or await self._open()
        try:
            lease = await pool.acquire(timeout=self.acquire_timeout)
        except _DRIVER_ERRORS as error:
            _raise_translated(error, "", None)
        return lease, lease._con

    async def release(self, lease: Any, connection: asyncpg.Connection) -> None:
        pool = self._pool
        if pool is None or lease._con is None:
            return  # closed (a dropped connection goes back by itself), or the pool is
        if not connection.is_closed() and pool.get_idle_size() + self._returning >= self.pool_size:
            # Beyond the pool's size (an overflow connection): closed, not kept idle.
            try:
                await connection.close(timeout=self.acquire_timeout)
            except BaseException:
                connection.terminate()
                raise
            return
        # Counted until it is idle, so that concurrent returns keep at most pool_size.
        self._returning += 1
        try:
            await pool.release(lease)
        finally:
            self._returning -= 1

    def pool_stats(self) -> PoolStats:
        """Connections lent out now, connections open, and the most there may be."""
        if self._pool is None:
            return PoolStats(in_use=0, size=0, max_size=self.max_size)
        size = self._pool.get_size()
        return PoolStats(
            in_use=size - self._pool.get_idle_size(), size=size, max_size=self.max_size
        )

    async def dispose(self) -> None:
        """Close the pool once its connections are back, waiting at most a few seconds for
        those lent out; then they are cut."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_WAIT_SECONDS)
        except TimeoutError:
            pool.terminate()


Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Transaction:
    """The request's transaction, begun by its first statement.

    A request refused before any SQL (no session cookie, a malformed id, a webhook body
    still streaming in) holds no pooled connection.
    """

    __slots__ = ("_connection", "_database", "_lease")

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lease: Any = None
        self._connection: asyncpg.Connection | None = None

    async def _begin(self) -> asyncpg.Connection:
        for attempt in (1, 2):
            lease, connection = await self._database.acquire()
            try:
                await connection.execute("BEGIN")
            except BaseException as error:
                connection.terminate()
                await self._database.release(lease, connection)
                if attempt == 1 and isinstance(error, (*_DRIVER_ERRORS, OSError)):
                    # An idle connection the server has just dropped (a restart): BEGIN
                    # did nothing, so a fresh connection may try it once more.
                    continue
                if isinstance(error, _DRIVER_ERRORS):
                    _raise_translated(error, "BEGIN", connection)
                raise
            self._lease, self._connection = lease, connection
            return connection
        raise AssertionError("unreachable")

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Result:
        connection = self._connection or await self._begin()
        if parameters is not None and not isinstance(parameters, Mapping):
            return await self._execute_many(connection, statement, parameters)
        compiled = _STATEMENTS.get(statement, parameters, False)
        arguments = compiled.arguments(parameters or {})
        try:
            if compiled.returns_rows:
                rows = await connection.fetch(compiled.sql, *arguments)
                return Result(rows, len(rows))
            status = await connection.execute(compiled.sql, *arguments)
        except _DRIVER_ERRORS as error:
            _raise_translated(error, compiled.sql, connection)
        return Result([], _rowcount(status))

    async def _execute_many(
        self,
        connection: asyncpg.Connection,
        statement: Executable,
        parameters: Sequence[Mapping[str, Any]],
    ) -> Result:
        if not parameters:
            return Result([], 0)
        compiled = _STATEMENTS.get(statement, parameters[0], True)
        arguments = [compiled.arguments(each) for each in parameters]
        try:
            await connection.executemany(compiled.sql, arguments)
        except _DRIVER_ERRORS as error:
            _raise_translated(error, compiled.sql, connection)
        return Result([], len(arguments))

    async def end(self, *, commit: bool) -> None:
        """Commit or roll back, and return the connection to the pool (if one was taken)."""
        connection, self._connection = self._connection, None
        lease, self._lease = self._lease, None
        if connection is None:
            return
        if connection.is_closed() and not commit:
            # Dropped with the server: nothing to roll back, and it went back by itself.
            await self._database.release(lease, connection)
            return
        command = "COMMIT" if commit else "ROLLBACK"
        try:
            await connection.execute(command)
        except BaseException as error:
            # A connection whose transaction state is unknown is not lent out again.
            connection.terminate()
            await self._database.release(lease, connection)
            if not commit and isinstance(error, Exception):
                # Cut, the connection takes its transaction with it: rolled back all the
                # same, and the error that led here is the one to report.
                return
            if isinstance(error, _DRIVER_ERRORS):
                _raise_translated(error, command, connection)
            raise
        await self._database.release(lease, connection)


def _rowcount(status: str) -> int:
    """The row count of a command tag ("UPDATE 3", "INSERT 0 1"); 0 when it has none."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


async def act_as(db: Transaction, user_id: uuid.UUID) -> None:
    """Act as `user_id` for the rest of this transaction (bind parameter, never formatted)."""
    await db.execute(ACT_AS, {"user_id": user_id})


@asynccontextmanager
async def begin(database: Database) -> AsyncIterator[Transaction]:
    """A transaction on `database`, a request's (through `transaction`) or a job's:
    committed when the block ends, rolled back when it raises or is cancelled."""
    db = Transaction(database)
    try:
        yield db
    except BaseException:
        await db.end(commit=False)
        raise
    await db.end(commit=True)


async def transaction(request: Request) -> AsyncIterator[Transaction]:
    """Commit when the route succeeds, roll back when it raises.

    Used with scope="function": the commit finishes before the response is sent, so a
    2xx always means the work is durable, and a failed commit is an error, not a 2xx.
    """
    async with begin(request.app.state.db) as db:
        yield db


Db = Annotated[Transaction, Depends(transaction, scope="function")]

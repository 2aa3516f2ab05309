"""The one writer: a burst is stored in batches (one commit each), a failing unit rolls
back only itself, a failed commit answers every caller with the error, and nothing is
answered before its commit (issue 10, point 1)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from monitor.services.writer import GroupWriter, WriterStopped
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import SourceCursorRow

T = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(e)
    yield e
    e.dispose()


def _put(name: str):  # type: ignore[no-untyped-def]
    def work(session: Session) -> str:
        session.add(SourceCursorRow(name=name, cursor="c", updated_at=T))
        session.flush()
        return name

    return work


def _names(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return sorted(r.name for r in s.exec(select(SourceCursorRow)))


def test_a_burst_is_written_in_few_commits(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)
    release, busy = threading.Event(), threading.Event()

    def first(session: Session) -> str:
        busy.set()
        release.wait(10)  # the writer is busy: the others gather meanwhile
        return _put("first")(session)

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(writer.submit(first)))]
    threads[0].start()
    busy.wait(10)
    for i in range(20):
        t = threading.Thread(target=lambda i=i: results.append(writer.submit(_put(f"n{i:02}"))))
        threads.append(t)
        t.start()
    while writer._queue.qsize() < 20:  # all twenty queued behind the first
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    writer.stop()
    assert sorted(results) == _names(engine) and len(results) == 21
    assert (writer.units, writer.batches) == (21, 2)


def test_a_failing_unit_rolls_back_only_itself(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)

    def fails(session: Session) -> str:
        _put("half-done")(session)
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        writer.submit(fails)
    assert writer.submit(_put("good")) == "good"
    writer.stop()
    assert _names(engine) == ["good"]


def test_a_failed_commit_answers_every_caller_with_the_error(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)
    failing = {"on": True}

    def boom(conn) -> None:  # type: ignore[no-untyped-def]
        if failing["on"]:
            raise OSError("disk full")

    event.listen(engine, "commit", boom)
    with pytest.raises(OSError, match="disk full"):
        writer.submit(_put("lost"))
    failing["on"] = False
    assert writer.submit(_put("kept")) == "kept"
    writer.stop()
    assert _names(engine) == ["kept"]


def test_nothing_is_answered_before_its_commit(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)
    seen: list[list[str]] = []

    def work(session: Session) -> str:
        _put("x")(session)
        return "x"

    assert writer.submit(work) == "x"
    seen.append(_names(engine))  # another connection sees it the moment submit returns
    writer.stop()
    assert seen == [["x"]]


def test_after_stop_a_submit_is_refused_and_stores_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)
    writer.submit(_put("before"))
    writer.stop()
    with pytest.raises(WriterStopped):
        writer.submit(_put("after"))
    assert _names(engine) == ["before"]


def test_senders_that_come_together_share_a_batch_and_a_lone_one_never_waits(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine, max_batch=2)
    writer.gather_s = 30.0  # far longer than the test: only a full batch ends the wait
    lone = threading.Thread(target=lambda: writer.submit(_put("lone")))
    lone.start()
    lone.join(10)
    assert not lone.is_alive(), "a lone message is written at once, with no company to wait for"
    assert writer.batches == 1
    writer.busy_s = 0.0  # only the last batch's company counts here
    writer._last = 2  # the last batch had company: the next one waits for more
    _a_waits_for_b_and_they_share_one_commit(writer)
    writer.stop()


def _a_waits_for_b_and_they_share_one_commit(writer: GroupWriter) -> None:
    before = writer.batches
    done: list[str] = []
    a = threading.Thread(target=lambda: done.append(writer.submit(_put("a"))))
    a.start()
    a.join(0.2)
    assert a.is_alive(), "the writer is busy: a waits for company"
    b = threading.Thread(target=lambda: done.append(writer.submit(_put("b"))))
    b.start()
    a.join(10)
    b.join(10)
    assert sorted(done) == ["a", "b"]
    assert writer.batches == before + 1, "a and b went in one batch and one commit"


def test_a_message_soon_after_a_commit_waits_for_company_and_a_later_one_does_not(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine, max_batch=2)
    writer.gather_s = 30.0  # far longer than the test: only a full batch ends the wait
    writer.busy_s = 30.0  # every message in this test comes "soon" after a commit
    writer.submit(_put("first"))  # the writer was quiet: written at once, alone
    assert writer.batches == 1 and writer._last == 1
    _a_waits_for_b_and_they_share_one_commit(writer)  # right after a commit: busy
    writer.busy_s = 0.0  # now no message comes soon enough to count as busy
    writer._last = 1
    lone = threading.Thread(target=lambda: writer.submit(_put("lone")))
    lone.start()
    lone.join(10)
    assert not lone.is_alive(), "a message that finds the writer quiet is written at once"
    writer.stop()


def test_after_commit_gets_what_before_commit_returned_once_committed(engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, list[str]]] = []
    writer = GroupWriter(
        engine,
        before_commit=lambda session, results: f"carried {len(results)}",
        after_commit=lambda carried: seen.append((carried, _names(engine))),
    )
    assert writer.submit(_put("x")) == "x"
    writer.stop()
    assert seen == [("carried 1", ["x"])]  # after the commit: another connection sees x


def test_after_commit_is_not_called_when_the_commit_fails(engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[object] = []
    writer = GroupWriter(engine, before_commit=lambda s, r: "claims", after_commit=seen.append)

    def boom(conn) -> None:  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    event.listen(engine, "commit", boom)
    with pytest.raises(OSError, match="disk full"):
        writer.submit(_put("lost"))
    event.remove(engine, "commit", boom)
    writer.stop()
    assert seen == []


def test_a_failing_after_commit_leaves_the_batch_committed(engine) -> None:  # type: ignore[no-untyped-def]
    def fails(carried: object) -> None:
        raise RuntimeError("hand-off broke")

    writer = GroupWriter(engine, after_commit=fails)
    assert writer.submit(_put("kept")) == "kept"  # the caller still gets its answer
    writer.stop()
    assert _names(engine) == ["kept"]


def test_in_a_shared_batch_a_failing_unit_rolls_back_only_its_own_savepoint(engine) -> None:  # type: ignore[no-untyped-def]
    writer = GroupWriter(engine)
    release, busy = threading.Event(), threading.Event()

    def first(session: Session) -> str:
        busy.set()
        release.wait(10)
        return _put("first")(session)

    def fails(session: Session) -> str:
        _put("half-done")(session)
        raise ValueError("bad message")

    errors: list[BaseException] = []

    def submit(work) -> None:  # type: ignore[no-untyped-def]
        try:
            writer.submit(work)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(first,))]
    threads[0].start()
    busy.wait(10)
    for work in (_put("before"), fails, _put("after")):
        threads.append(threading.Thread(target=submit, args=(work,)))
        threads[-1].start()
    while writer._queue.qsize() < 3:  # all three queued behind the first: one batch
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    writer.stop()
    assert [str(e) for e in errors] == ["bad message"]
    assert _names(engine) == ["after", "before", "first"]
    assert (writer.units, writer.batches) == (4, 2)

"""`monitor run`: one asyncio process; APScheduler 3.11 is its clock.

Jobs: the deadline sweep (patients whose indexed `next_check_at` has come), the
dispatcher (every second, and at once when this process raises an alert), the
escalation check and the systemd watchdog. The database is the source of truth:
the scheduler holds no per-patient jobs, so a restart after downtime simply finds
what is due and raises each missed deadline once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from monitor import heap
from monitor.clock import Clock, SystemClock
from monitor.config_check import load_checked
from monitor.core.protocol import Protocol
from monitor.notifiers.base import Notifier, close_notifier, start_notifier
from monitor.routing import Routing
from monitor.sdnotify import SystemdNotifier
from monitor.secrets import SecretSource
from monitor.services import patient_sms_job
from monitor.services.codes import new_code
from monitor.services.deferred import evaluate_results
from monitor.services.dispatch import Dispatcher
from monitor.services.escalation import escalate_due
from monitor.services.evaluate import (
    UnknownPatient,
    evaluate_patient,
    evaluate_patients,
)
from monitor.services.failover import recover_orphans
from monitor.services.handoff import Carried, claim_written
from monitor.services.instances import DEFAULT_LEASE_SECONDS, Heartbeat, new_instance_id
from monitor.services.jobs import STATS
from monitor.services.payloads import PayloadResult, parse_payload, store_parsed
from monitor.services.sweep import ESCALATION_BATCH, due_batches, single_runner
from monitor.services.watch_jobs import WatchJobs
from monitor.services.writer import GroupWriter
from monitor.settings import Settings, SettingsError, state_dir
from monitor.sources import ParseLimits, load_mapping
from monitor.startup import (
    StartupError,
    check_database,
    db_error_line,
    enrolled_count,
    listen_socket,
    require_a_person,
)
from monitor.store.checkpoint import WalCheckpointer
from monitor.store.db import make_engine, session_scope, upgrade
from monitor.store.models import AlertRow, PatientRow
from monitor.web.host import HostBasics

log = structlog.get_logger(__name__)

# Due patients judged per sweep transaction: ~1 ms each, so SQLite's write lock is
# held a fraction of a second and a message waiting to be stored is not held up.
EVAL_BATCH = 100


@dataclass
class Config:
    """Everything a reload replaces at once, or not at all."""

    settings: Settings
    protocols: dict[str, Protocol]
    routing: Routing
    notifiers: dict[str, Notifier]
    # `[channels.<name>] max_concurrency`: sends at once on that channel
    concurrency: dict[str, int] = field(default_factory=dict)


def load_config(path: str | None, secrets: SecretSource) -> Config:
    """The strict loader `monitor check-config` runs; ConfigInvalid lists every problem."""
    checked = load_checked(path, secrets)
    assert checked.settings is not None and checked.routing is not None
    concurrency = {
        name: int(spec["max_concurrency"])
        for name, spec in checked.routing.channels.items()
        if "max_concurrency" in spec
    }
    return Config(
        checked.settings, checked.protocols, checked.routing, checked.notifiers, concurrency
    )


def unapproved(protocols: Mapping[str, Protocol]) -> list[str]:
    return [p.label for p in protocols.values() if not p.approval.approved]


class Service(HostBasics):
    """The running monitor: config, store, dispatcher and the jobs that drive them."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        config_path: str | None = None,
        secrets: SecretSource | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.config_path = config_path
        self.secrets = secrets or SecretSource()
        self.engine = engine or make_engine(config.settings.database_url)
        # SQLite's log checkpointed off the commit path (None on other databases)
        self.checkpointer = WalCheckpointer.for_engine(self.engine)
        # every source's messages, one commit and one evaluation a batch
        self.writer = GroupWriter(
            self.engine, before_commit=self._evaluate_written, after_commit=self._written
        )
        self.instance_id = new_instance_id()
        daemon_cfg = config.settings.raw.get("daemon", {})
        self.heartbeat = Heartbeat(
            self.engine,
            self.instance_id,
            lease=timedelta(
                seconds=float(daemon_cfg.get("instance_lease_seconds", DEFAULT_LEASE_SECONDS))
            ),
        )
        self.dispatcher = Dispatcher(
            self.engine,
            config.routing,
            config.notifiers,
            self.clock,
            worker=self.instance_id,
            limits=config.concurrency,
        )
        self.heartbeat.claim_lease = self.dispatcher.lease
        self._rerun = False
        # the loop the scheduler runs on, once started: wake-ups from other threads go
        # through it; drains started by a wake-up are kept here until they finish
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drains: set[asyncio.Task[int]] = set()
        self.scheduler: AsyncIOScheduler | None = None
        self.sd = SystemdNotifier()
        self.last_sweep: datetime | None = None
        self._dispatch_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.mapping = load_mapping(config.settings.mapping_path)
        self.parse_limits = ParseLimits.from_config(config.settings.raw)  # [ingest]
        self.sources: list[Any] = []
        self._closing: set[asyncio.Task[None]] = set()
        # `monitor run --host/--port/--mllp-port`, over the config's addresses.
        self.listen: dict[str, Any] = {}
        # Outside --demo: a config that pages nobody for a critical alert is refused.
        self.require_person = False
        self.watch = WatchJobs(self)  # heartbeat URL, silent feeds, delivery audit, summary

    # --- the work (each callable with a pinned clock in tests) ---------------------

    def sweep(self) -> list[AlertRow]:
        """Evaluate every patient whose next check time has come; errors raise alerts."""
        with single_runner(self.engine, "sweep") as mine:
            if not mine:
                return []  # another instance is sweeping the same database now
            began = time.monotonic()
            raised = self._sweep()
        self.watch.sweep_finished(time.monotonic() - began)  # metrics; the dead man's switch
        return raised

    def _sweep(self) -> list[AlertRow]:
        now = self.clock.now()
        due: list[str] = []
        raised: list[AlertRow] = []
        for batch in due_batches(self.engine, now):
            due += batch
            raised += self._evaluate_batch(batch, now)
        self.last_sweep = now
        if due:
            log.info("sweep.done", patients=len(due), alerts=len(raised))
        if raised:
            self.wake_dispatcher()
        return raised

    def _evaluate_batch(self, due: list[str], now: datetime) -> list[AlertRow]:
        """Due patients judged EVAL_BATCH at a time, one transaction each (a short hold
        of SQLite's write lock, so ingest is not kept waiting); a batch whose write
        fails is judged again one patient per transaction."""
        raised: list[AlertRow] = []
        for start in range(0, len(due), EVAL_BATCH):
            chunk = due[start : start + EVAL_BATCH]
            try:
                with session_scope(self.engine) as session:
                    done = evaluate_patients(
                        session, chunk, now, self.config.protocols, self.config.routing
                    )
            except OperationalError as exc:
                # The database was busy or away: nothing was judged wrong, and the
                # deadlines are still due, so the next sweep tries again.
                log.warning("sweep.database_unavailable", patients=len(chunk), error=str(exc))
                continue
            except Exception:
                log.exception("sweep.batch_failed", patients=len(chunk))
                raised += self._evaluate_each(chunk, now)
                continue
            raised += done.alerts
            for patient_id, error in done.failed.items():
                if isinstance(error, UnknownPatient):
                    log.warning("sweep.patient_gone", patient_id=patient_id)
                    continue
                log.error("sweep.evaluation_error", patient_id=patient_id, exc_info=error)
                raised += self._evaluation_error(patient_id, error, now)
        return raised

    def _evaluate_each(self, due: list[str], now: datetime) -> list[AlertRow]:
        raised: list[AlertRow] = []
        for patient_id in due:
            try:
                with session_scope(self.engine) as session:
                    raised += evaluate_patient(
                        session, patient_id, now, self.config.protocols, self.config.routing
                    )
            except OperationalError as exc:
                log.warning("sweep.database_unavailable", patient_id=patient_id, error=str(exc))
            except Exception as exc:
                log.exception("sweep.evaluation_error", patient_id=patient_id)
                raised += self._evaluation_error(patient_id, exc, now)
        return raised

    def _evaluation_error(self, patient_id: str, exc: Exception, now: datetime) -> list[AlertRow]:
        """An evaluation that fails raises its own alert; the deadline is not pushed back."""
        from monitor.services.outbox import enqueue

        with session_scope(self.engine) as session:
            row = session.get(PatientRow, patient_id)
            key = f"error:{row.next_check_at.isoformat() if row and row.next_check_at else now}"
            if session.exec(
                select(AlertRow).where(
                    AlertRow.patient_id == patient_id,
                    AlertRow.rule == "system.evaluation_error",
                    AlertRow.key == key,
                )
            ).first():
                return []
            alert = AlertRow(
                code=new_code(session),
                patient_id=patient_id,
                rule="system.evaluation_error",
                severity="critical",
                key=key,
                at=now,
                raised_at=now,
                message=(
                    f"The monitor could not evaluate this patient ({type(exc).__name__}); "
                    "their deadlines and stop rules are NOT being checked. Check the "
                    "patient's data and the service log."
                ),
                details={"error": repr(exc)[:500]},
                profile="-",
                group_id=f"err-{new_code(session)}",
            )
            session.add(alert)
            session.flush()
            enqueue(session, [alert], self.config.routing, now)
            return [alert]

    def quarantine_digest(self) -> AlertRow | None:
        """The coordinators' daily count of what waits in quarantine."""
        from monitor.services.quarantine import daily_digest

        now = self.clock.now()
        with session_scope(self.engine) as session:
            alert = daily_digest(session, self.config.routing, now, now.date().isoformat())
        if alert is not None:
            self.wake_dispatcher()
        return alert

    def escalate(self) -> int:
        """Every due step, in batches until none is due (row claims keep it single)."""
        n = 0
        with single_runner(self.engine, "escalate") as mine:
            while mine:
                with session_scope(self.engine) as session:
                    step = escalate_due(session, self.config.routing, self.clock.now())
                n += step
                if step < ESCALATION_BATCH:
                    break
        if n:
            self.wake_dispatcher()
        return n

    async def dispatch(self, claim: bool = True) -> int:
        """Drain; a wake-up that came during the run makes it go round again, and so do
        claims handed over as it ended. After SIGTERM no new claims are taken: what is
        in flight finishes and is settled. `claim=False`: only send what was handed."""
        n = 0
        async with self._dispatch_lock:
            while not self.stopping.is_set():
                self._rerun = False
                n += await self.dispatcher.run_once(stop=self.stopping.is_set, claim=claim)
                if self._rerun:
                    claim = True
                elif self.dispatcher.handed:
                    claim = False
                else:
                    break
        return n

    async def _dispatch_tick(self) -> int:
        """The scheduler's dispatch job: a drain running now already claims whatever is
        due, so a tick during it returns at once instead of queueing on the lock (and the
        scheduler never sees a run overlap its next one)."""
        if self._dispatch_lock.locked():
            return 0
        return await self.dispatch()

    def heartbeat_beat(self) -> int:
        """Renew this instance's lease; free a lapsed instance's claims and send them."""
        freed = self.heartbeat.beat(self.clock.now())
        if freed:
            self.wake_dispatcher()
        return freed

    def wake_dispatcher(self, claim: bool = True) -> None:
        """Hand new alerts to the dispatcher at once instead of at its next tick. Safe
        from any thread (sources call it from theirs). It never touches the scheduler: a
        drain running now is told to go round again (a flag), and otherwise a drain is
        started on the loop, so a burst of wake-ups costs a flag each, not a job change
        and a "maximum number of running instances" warning. `claim=False`: only claims
        handed over (`Dispatcher.hand`) wait, so a drain started for them claims none
        (a running one takes them through its own wake-up)."""
        if claim:
            self._rerun = True
        loop = self._loop
        if loop is None or not self._dispatching():
            return  # no running service (tests, the CLI): the next dispatch() sees the flag
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._start_drain(claim)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._start_drain, claim)

    def _dispatching(self) -> bool:
        """A running service whose dispatcher will take handed claims."""
        sched = self.scheduler
        return (
            self._loop is not None
            and sched is not None
            and sched.running
            and not self.stopping.is_set()
        )

    def _start_drain(self, claim: bool = True) -> None:
        if self._dispatch_lock.locked() or self.stopping.is_set():
            return  # the running drain goes round again; after SIGTERM nothing new starts
        task = asyncio.ensure_future(self.dispatch(claim))
        self._drains.add(task)
        task.add_done_callback(self._drain_done)

    def _drain_done(self, task: asyncio.Task[int]) -> None:
        self._drains.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch.drain_failed", exc_info=task.exception())

    # --- configuration --------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: swap in the new config and protocols, or keep the old and say why."""
        self.sd.reloading()
        try:
            new = load_config(self.config_path, self.secrets)
            if self.require_person:
                require_a_person(new.routing, console_only_intended(new.settings))
            mapping = load_mapping(new.settings.mapping_path)
            parse_limits = ParseLimits.from_config(new.settings.raw)
        except (SettingsError, ValueError) as exc:
            log.error("config.reload_refused", reason=str(exc))
            self.sd.ready(status="reload refused; running on the previous config")
            return False
        old = self.config.notifiers
        self.config = new
        self.mapping = mapping
        self.parse_limits = parse_limits
        from monitor.sources.fhir_poller import FhirPoller

        for source in self.sources:  # the poller parses on its own: give it the new bounds
            if isinstance(source, FhirPoller):
                source.limits = parse_limits
        self.dispatcher.routing = new.routing
        self.dispatcher.notifiers = new.notifiers
        self.dispatcher.limits = new.concurrency
        self._close_later(old)
        log.info(
            "config.reloaded", protocols=sorted(new.protocols), unapproved=unapproved(new.protocols)
        )
        self.sd.ready(status=self.status_line())
        return True

    def _close_later(self, notifiers: Mapping[str, Notifier]) -> None:
        """Close replaced notifiers once the sends that use them have finished."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def close() -> None:
            async with self._dispatch_lock:
                await close_all(notifiers)

        task = loop.create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def status_line(self) -> str:
        patients = enrolled_count(self.engine)  # one count(*), not every id loaded
        warn = unapproved(self.config.protocols)
        return f"{patients} patients; " + (
            f"UNAPPROVED profiles: {', '.join(warn)}" if warn else "all profiles approved"
        )

    # --- lifecycle ------------------------------------------------------------------

    def start_scheduler(
        self,
        sweep_seconds: float,
        dispatch_seconds: float,
        escalation_seconds: float,
        first_run: datetime | None = None,
    ) -> AsyncIOScheduler:
        """Every job runs late rather than never (`misfire_grace_time=None`, coalesced):
        after a busy moment a sweep or an escalation is late, not a whole interval
        late. `first_run` (now by default) is when the first runs are due."""
        sched = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True},
        )
        sched.add_listener(
            _count_run, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        now = first_run or datetime.now(UTC)
        sched.add_job(
            self.sweep,
            "interval",
            seconds=sweep_seconds,
            id="sweep",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        sched.add_job(
            self._dispatch_tick,
            "interval",
            seconds=dispatch_seconds,
            id="dispatch",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        sched.add_job(
            self.escalate,
            "interval",
            seconds=escalation_seconds,
            id="escalate",
            next_run_time=now + timedelta(seconds=1),
            max_instances=1,
            coalesce=True,
        )
        report = str(
            self.config.settings.raw.get("sources", {}).get("quarantine_report_at", "08:00")
        )
        hour, minute = (int(x) for x in report.split(":"))
        zone = self.config.routing.quiet_hours.tz if self.config.routing.quiet_hours else UTC
        sched.add_job(
            self.quarantine_digest,
            "cron",
            hour=hour,
            minute=minute,
            timezone=zone,
            id="quarantine_digest",
            coalesce=True,
        )
        sched.add_job(
            self.heartbeat_beat,
            "interval",
            seconds=self.heartbeat.interval_seconds,
            id="heartbeat",
            max_instances=1,
        )
        self.watch.schedule(sched, now)
        patient_sms_job.schedule(sched, self, sweep_seconds, now)  # issue 14
        interval = self.sd.watchdog_interval()
        if interval:  # fed only while sweeps keep finishing
            sched.add_job(self.watch.watchdog, "interval", seconds=interval, id="watchdog")
        sched.start()
        self.scheduler = sched
        with contextlib.suppress(RuntimeError):  # started outside a running loop
            self._loop = asyncio.get_running_loop()
        return sched

    async def run(self, web: bool = True) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.heartbeat.register(self.clock.now())
        for notifier in self.config.notifiers.values():
            await start_notifier(notifier)
        freed = recover_orphans(self.engine, self.clock.now())
        if freed:
            log.warning("dispatch.recovered_orphans", deliveries=freed)
        for label in unapproved(self.config.protocols):
            log.warning(
                "protocol.unapproved",
                profile=label,
                message=f"profile {label} is UNAPPROVED: no clinician has signed it off",
            )
        # The listening addresses first: a busy port stops the start before any job runs.
        sock: socket.socket | None = None
        try:
            sock = self._bind_web() if web else None
            await self._start_mllp()
        except StartupError:
            if sock is not None:
                sock.close()
            for source in self.sources:
                await source.stop()
            self.engine.dispose()
            raise
        if self.checkpointer is not None:
            self.checkpointer.start()
        daemon_cfg = self.config.settings.raw.get("daemon", {})
        self.start_scheduler(
            float(daemon_cfg.get("sweep_seconds", 60)),
            float(daemon_cfg.get("dispatch_seconds", 1)),
            float(daemon_cfg.get("escalation_seconds", 30)),
        )
        server_task: asyncio.Task[Any] | None = None
        server: Any = None
        if sock is not None:
            server, server_task = await self._start_web(sock)
        await self._start_sources()
        heap.settle()  # the collector no longer walks the start-up heap (monitor/heap.py)
        status = self.status_line()
        self.sd.ready(status=status)
        log.info("daemon.started", status=status)
        await self.stopping.wait()
        log.info("daemon.stopping")
        self.sd.stopping()
        assert self.scheduler is not None
        self.scheduler.pause()
        async with self._dispatch_lock:  # in-flight sends finish first
            self.scheduler.shutdown(wait=False)
        for drain in list(self._drains):  # woken drains see `stopping` and return
            await drain
        await close_all(self.config.notifiers)
        for task in list(self._closing):
            await task
        self.heartbeat.retire()
        for source in self.sources:
            await source.stop()
        if server is not None:
            server.should_exit = True
            if server_task is not None:
                await server_task
        await asyncio.to_thread(self.writer.stop)  # what sources handed over is written
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
        self.engine.dispose()
        log.info("daemon.stopped")

    async def _start_mllp(self) -> None:
        """The MLLP listener of `[sources.mllp]` when enabled; a busy port is StartupError."""
        from monitor.sources.mllp_listener import MLLPListener
        from monitor.sources.mllp_tls import TLSConfigError

        mllp = self.config.settings.raw.get("sources", {}).get("mllp", {})
        if mllp.get("enabled"):
            if self.listen.get("mllp_port") is not None:
                mllp = {**mllp, "port": self.listen["mllp_port"]}
            try:
                listener = MLLPListener(mllp, self.ingest, self.config.settings.path.parent)
            except TLSConfigError as exc:
                raise StartupError(str(exc)) from exc
            try:
                await listener.start()
            except OSError as exc:
                raise StartupError(
                    f"sources.mllp: cannot listen on {listener.host}:{listener.port} "
                    f"({exc.strerror or exc}); set another port in the config or with "
                    "--mllp-port"
                ) from exc
            self.sources.append(listener)

    async def _start_sources(self) -> None:
        """The folder and poller named in `[sources.*]` with `enabled = true`."""
        from monitor.sources.csv_folder import CSVFolder
        from monitor.sources.fhir_poller import FhirPoller

        conf = self.config.settings.raw.get("sources", {})
        assert self.scheduler is not None
        csv = conf.get("csv", {})
        if csv.get("enabled"):
            folder = CSVFolder(csv, self.ingest, state_dir(), self.clock.now)
            await folder.start()
            self.sources.append(folder)
            self.scheduler.add_job(
                folder.scan,
                "interval",
                id="csv",
                seconds=float(csv.get("scan_seconds", 10)),
                max_instances=1,
                coalesce=True,
            )
        poll = conf.get("fhir_poll", {})
        if poll.get("enabled"):
            poller = FhirPoller(
                poll,
                self.engine,
                lambda: (self.config.protocols, self.config.routing, self.mapping),
                self.clock.now,
                self.wake_dispatcher,
                limits=self.parse_limits,
            )
            self.sources.append(poller)
            self.scheduler.add_job(
                poller.poll,
                "interval",
                id="fhir_poll",
                seconds=float(poll.get("interval_seconds", 300)),
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
            )

    def _bind_web(self) -> socket.socket | None:
        """The web address (`--host/--port` over `[web]`), bound; None when disabled."""
        web_cfg = self.config.settings.raw.get("web", {})
        if web_cfg.get("enabled", True) is False:
            return None
        host = str(self.listen.get("host") or web_cfg.get("host", "127.0.0.1"))
        port = self.listen.get("port")
        return listen_socket(host, int(web_cfg.get("port", 8080) if port is None else port), "web")

    async def _start_web(self, sock: socket.socket) -> tuple[Any, asyncio.Task[Any] | None]:

        from monitor.web.app import create_app
        from monitor.web.host import web_settings
        from monitor.web.server import uvicorn_config

        host, port = sock.getsockname()[:2]
        web = web_settings(self.config.settings.raw)
        config = uvicorn_config(create_app(self, web), web, host, port)  # bounds, proxies
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        log.info("web.listening", host=host, port=port)
        return server, task

    # --- sources --------------------------------------------------------------------

    def ingest(
        self,
        payload: bytes | str,
        fmt: str,
        source: str,
        whole: bool = False,
        assume_tz: str = "UTC",
        source_name: str | None = None,
    ) -> PayloadResult:
        """Parse here (on the caller's thread), store through the one writer; committed
        before this returns, so a source may acknowledge. Call from a worker thread."""
        parsed = parse_payload(
            payload, fmt, self.mapping, source_name or source, assume_tz, self.parse_limits
        )
        protocols, routing = self.config.protocols, self.config.routing

        def store(session: Session) -> PayloadResult:
            return store_parsed(
                session,
                parsed,
                source,
                self.clock.now(),
                protocols,
                routing,
                whole=whole,
                evaluate=False,
            )

        return self.writer.submit(store)  # the dispatcher was woken after the commit

    def _evaluate_written(self, session: Session, results: list[Any]) -> Carried:
        """The group writer's batch: every patient its messages stored for, judged
        once, before the commit that lets the sources ACK; the new alerts' first sends
        claimed in the same transaction (services/handoff.py)."""
        stored = [r for out in results if isinstance(out, PayloadResult) for r in out.results]
        now = self.clock.now()
        alerts = evaluate_results(session, stored, now, self.config.protocols, self.config.routing)
        return claim_written(session, self.dispatcher, alerts, now, self._dispatching())

    def _written(self, carried: Carried) -> None:
        """After the batch's commit, on the writer's thread: its claims to the
        dispatcher, in memory; a claim pass only for sends left pending."""
        if carried.claims:
            self.dispatcher.hand(carried.claims)
        if carried.claims or carried.more:
            self.wake_dispatcher(claim=carried.more)

    def fhir_push_token(self) -> str | None:
        return self.secrets.find("fhir_push_token")


def _count_run(event: JobEvent) -> None:
    """Feed `monitor.services.jobs.STATS`: runs, late runs, skipped runs per job."""
    if isinstance(event, JobSubmissionEvent):
        times = sorted(event.scheduled_run_times)
        STATS.ran(event.job_id, (datetime.now(UTC) - times[0]).total_seconds())
        for _ in times[1:]:  # coalesced into this run
            STATS.skipped(event.job_id)
    else:
        STATS.skipped(event.job_id)
        log.warning("scheduler.run_skipped", job=event.job_id, event=event.code)


async def close_all(notifiers: Mapping[str, Notifier]) -> None:
    for name, notifier in notifiers.items():
        try:
            await close_notifier(notifier)
        except Exception:
            log.warning("notifier.close_failed", channel=name, exc_info=True)


class _QuietServer:
    """uvicorn's server without its own signal handling: the daemon owns the signals."""

    def __new__(cls, config: Any) -> Any:
        import contextlib

        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


def console_only_intended(settings: Settings) -> bool:
    daemon = settings.raw.get("daemon", {})
    return bool(isinstance(daemon, dict) and daemon.get("console_only", False))


def run_daemon(
    config_path: str | None,
    web: bool = True,
    *,
    demo: bool = False,
    console_only: bool = False,
    host: str | None = None,
    port: int | None = None,
    mllp_port: int | None = None,
) -> None:
    """Load strictly, check what must hold, then run until SIGTERM; StartupError is one
    line for the operator."""
    secrets = SecretSource()
    config = load_config(config_path, secrets)
    if not demo:
        require_a_person(config.routing, console_only or console_only_intended(config.settings))
        if config.settings.raw.get("daemon", {}).get("check_channels_at_start"):
            from monitor.doctor import check_channels_at_start

            check_channels_at_start(config_path, secrets)
    try:
        engine = make_engine(config.settings.database_url)
    except OSError as exc:
        raise StartupError(
            f"database {config.settings.database_url}: cannot open it ({exc.strerror or exc}: "
            f"{exc.filename})"
        ) from exc
    check_database(engine)
    try:
        upgrade(engine)
    except (OperationalError, OSError) as exc:
        raise StartupError(
            f"database {engine.url.render_as_string(hide_password=True)}: cannot migrate it "
            f"({db_error_line(exc)})"
        ) from exc
    service = Service(config, config_path=config_path, secrets=secrets, engine=engine)
    service.require_person = not demo and not console_only
    service.listen = {"host": host, "port": port, "mllp_port": mllp_port}
    asyncio.run(service.run(web=web))

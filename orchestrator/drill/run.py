"""`failover drill`: the whole system on one machine, a scenario's faults compressed in time, and the report.

Stands up the testbed (moto as AWS, the GCP and Azure fakes, three reference replicas), the orchestrator (one
daemon on SQLite with two probe agents as vantage points, or three daemons on a three-member etcd with `ha`),
streams orders at whichever replica is primary, injects the faults, watches, and ends with the figures a
postmortem needs, written as drill-report.md, drill-report.json and drill-timeline.png. The figures are computed
by the same code as `failover report`, from the same store, so both agree. Everything started is stopped, also on
Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from orchestrator.config import load_config
from orchestrator.core.durations import format_duration
from orchestrator.core.errors import ConfigError, EngineError
from orchestrator.core.model import Role
from orchestrator.core.phases import parse_timezone
from orchestrator.drill.chart import SIGNAL_PREFIX, TimelineData, render_png
from orchestrator.drill.daemons import Daemons
from orchestrator.drill.faults import FaultInjector
from orchestrator.drill.orders import OrderStream, missing_or_moved, trades_by_phase
from orchestrator.drill.rejoin import RejoinStage, drill_quarantine, rejoin_old_primary, shorten_quarantine, site_back
from orchestrator.drivers.report import IncidentReport, build_report, render_markdown
from orchestrator.engine.client import HttpEngineClient
from orchestrator.sim.scenario import Scenario, load_scenario
from orchestrator.testbed.world import Testbed

SCENARIOS = Path(__file__).resolve().parents[2] / "configs" / "scenarios"
PROBE_INTERVAL, PROBE_TIMEOUT = 0.25, 0.15
PAGE = 5000  # the most entries or trades one read returns


def paged(read: Callable[[Any, int, int], list[dict[str, Any]]], replica: Any) -> list[dict[str, Any]]:
    """Every journal entry or trade, page by page: one read holds 5,000, and a drill that streams for minutes
    (`--rejoin` waiting out a quarantine) journals more; read once, the rest counted as lost orders. A page is cut
    before its last seq, so the trades of one order (one seq) are never split across two pages."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = read(replica, after, PAGE)
        if len(page) < PAGE:
            return found + page
        last = int(page[-1]["seq"])
        whole = [item for item in page if int(item["seq"]) < last] or page
        found += whole
        after = int(whole[-1]["seq"])


def resolve_scenario(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = SCENARIOS / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml") if p.stem != "hk-topology"))
        raise ConfigError(f"--scenario {name_or_path}: no such scenario (known: {known})")
    return candidate


@dataclass
class DrillOptions:
    scenario: str = "hk-2022"
    ha: bool = False
    speed: float = 60.0
    out: Path = Path(".")
    max_seconds: float = 100.0
    lead_in: float = 5.0  # seconds of normal trading before the first fault
    settle: float = 4.0  # seconds to watch after the failover completed
    order_rate: float = 40.0
    seed: int = 0
    rejoin: bool = False  # after the failover, rejoin the old primary and wait for three replicas in sync


@dataclass
class DrillState:
    """What the live view shows; updated by the watcher thread."""

    elapsed: float = 0.0
    scenario_time: float = 0.0
    sites: dict[str, str] = field(default_factory=dict)
    phase: str = "open"
    primary: str = ""
    leader: str = ""
    step: str = ""
    incident: str = ""
    acknowledged: int = 0
    refused: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class DrillResult:
    scenario: str
    incident: str | None
    figures: dict[str, Any]
    invariants: dict[str, bool]
    files: list[Path]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())


class Drill:
    def __init__(self, options: DrillOptions, on_update: Callable[[DrillState], None] | None = None,
                 on_page: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.on_page = on_page  # told the status page's URL once the first daemon leads (`drill --open`)
        self.scenario: Scenario = load_scenario(resolve_scenario(options.scenario))
        self.on_update = on_update
        self.state = DrillState()
        self.timeline = TimelineData(origin=time.time())
        self.primaries_seen: set[str] = set()
        # (site, source) -> (wall time, status) of the first provider observation after the fault that was not ok:
        # when each cloud signal reached the orchestrator (read from the store, as the leader recorded it)
        self.signals_seen: dict[tuple[str, str], tuple[float, str]] = {}
        self.rejoin_stage: RejoinStage | None = None  # `--rejoin`: what rebuilding redundancy did
        self._stop = threading.Event()

    # ---- timings ----------------------------------------------------------------------------------------------

    def compressed(self, seconds: float, floor: float = 0.0) -> float:
        return max(floor, seconds / self.options.speed)

    def origin(self) -> float:
        """Scenario seconds at which the drill starts: a little before the first fault, skipping idle hours."""
        first = min((f.at for f in self.scenario.faults), default=0.0)
        return max(0.0, first - self.options.lead_in * self.options.speed)

    def testbed(self, base: Path, store: str | None) -> Testbed:
        topology = self.scenario.topology
        protection = self.compressed(topology.protection.duration, floor=PROBE_INTERVAL * 3 * 10)
        return Testbed(
            base, store=store, protection=f"{protection:.3f}s", probe_interval=f"{PROBE_INTERVAL * 1000:g}ms",
            probe_timeout=f"{PROBE_TIMEOUT * 1000:g}ms", provider_interval="1s",
            min_failover_interval=f"{self.compressed(topology.policy.min_failover_interval, 1.0):.3f}s",
            flap_window=f"{self.compressed(topology.policy.flap_window, PROBE_INTERVAL * 3 * 3):.3f}s",
            lease_ttl="3s", aws_health_api=True,
        )

    # ---- the run ----------------------------------------------------------------------------------------------

    def run(self) -> DrillResult:
        options = self.options
        options.out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="failover-drill-"))
        with ExitStack() as stack:
            stack.callback(shutil.rmtree, work, True)
            store_path = (options.out / "drill-state.db").resolve()
            for stale in options.out.glob("drill-state.db*"):
                stale.unlink()
            store: str | None = f"sqlite:///{store_path}"
            etcd = None
            if options.ha:
                from orchestrator.testbed.etcd import EtcdCluster

                etcd = stack.enter_context(EtcdCluster(3, work / "etcd"))
                store = f"{etcd.url}/drill"
            bed = stack.enter_context(self.testbed(work / "bed", store))
            assert bed.replicas is not None
            if options.rejoin:  # before any daemon reads it (orchestrator/drill/rejoin.py says why)
                shorten_quarantine(bed.config_path, self._quarantine())
            daemons = Daemons(bed.env(), work)
            stack.callback(daemons.stop_all)
            if options.ha:
                for name, vantage in (("daemon-aws", "aws-hk"), ("daemon-gcp", "gcp-hk"), ("daemon-azure", "azure-hk")):
                    daemons.start(name, vantage)
            else:
                daemons.start("daemon", "orchestrator")
                daemons.start("probe-gcp", "gcp-hk", observe_only=True)
                daemons.start("probe-azure", "azure-hk", observe_only=True)
            daemons.wait_for(lambda: len(daemons.leaders()) == 1, 30, "an orchestrator to lead")
            if self.on_page is not None:  # every daemon serves the page from the same store: the first one's
                self.on_page(f"http://127.0.0.1:{daemons.running[0].port}/")
            # clients with a client's patience: a frozen replica must not stall the stream or the watcher for long
            client = HttpEngineClient(token_file=bed.replicas.token_file, read_timeout=1.0, connect_timeout=0.5,
                                      attempts=1)
            stack.callback(client.close)
            watch_client = HttpEngineClient(token_file=bed.replicas.token_file, read_timeout=0.2, connect_timeout=0.2,
                                            attempts=1)
            stack.callback(watch_client.close)
            replicas = [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")]
            stream = OrderStream(client, replicas, rate=options.order_rate, seed=options.seed).start()
            stack.callback(stream.stop)
            injector = FaultInjector(bed, self.scenario, options.speed, self.origin(), PROBE_TIMEOUT)
            self.timeline = TimelineData(origin=time.time())
            injector.start()
            stack.callback(injector.stop)
            watcher = threading.Thread(target=self._watch, args=(bed, daemons, watch_client, stream, injector),
                                       daemon=True)
            watcher.start()
            self._wait_for_end(bed, injector)
            if not options.rejoin:  # --rejoin: orders flow and the lanes are drawn on through the rejoin
                self._stop.set()
                watcher.join(timeout=5)
            ledger = stream.ledger if options.rejoin else stream.stop()
            injector.stop()
            zombie = self._old_primary_refuses(bed, client)
            if options.rejoin:
                self.rejoin_stage = self._rejoin(bed, stream)
                self._stop.set()
                watcher.join(timeout=5)
                ledger = stream.stop()
            result = self._conclude(bed, client, ledger, injector, zombie)
            result.files.extend(self._write_config_copy(bed))
            return result

    def _wait_for_end(self, bed: Testbed, injector: FaultInjector) -> None:
        options = self.options
        began = time.monotonic()
        scenario_end = injector.wall(self.scenario.duration)
        finished_at: float | None = None
        # the late provider signals are part of the story: watch until the first one is due, and a settle after it
        report_due = injector.first_report()
        loaded = load_config(bed.config_path)
        with loaded.open_store() as store:
            while True:
                elapsed = time.monotonic() - began
                if elapsed >= min(options.max_seconds, scenario_end):
                    return
                incidents = store.incidents(limit=1)
                if incidents and not incidents[0].is_open and finished_at is None:
                    finished_at = elapsed
                if finished_at is not None and elapsed - max(finished_at, report_due or 0.0) >= options.settle:
                    return
                time.sleep(0.2)

    # ---- watching -----------------------------------------------------------------------------------------

    def _watch(self, bed: Testbed, daemons: Daemons, client: HttpEngineClient, stream: OrderStream,
               injector: FaultInjector) -> None:
        loaded = load_config(bed.config_path)
        sites = list(loaded.topology.sites)
        began = time.monotonic()
        seen_steps: set[tuple[str, str]] = set()
        applied = 0
        cursor = time.time()
        with loaded.open_store() as store:
            while not self._stop.is_set():
                now = time.time()
                state = self.state
                state.elapsed = time.monotonic() - began
                state.scenario_time = self.scenario.start + self.origin() + state.elapsed * self.options.speed
                statuses = daemons.statuses()
                leader = next((s for s in statuses.values() if s["leader"]), None)
                state.leader = next((n for n, s in statuses.items() if s["leader"]), "")
                for site in sites:
                    verdict = str(leader["verdicts"].get(site, "unknown")) if leader else "unknown"
                    state.sites[site] = verdict
                    self.timeline.sample(now, f"site {site}", verdict)
                primary, phase = self._engine_phase(client, bed)
                state.primary, state.phase = primary, phase
                self.timeline.sample(now, "engine spot", phase)
                incidents = store.incidents(limit=1)
                if incidents:
                    state.incident = incidents[0].id
                    for entry in store.journal(incidents[0].id):
                        marked = entry.state in ("done", "skipped", "needs_human", "extended")
                        if marked and (entry.step, entry.state) not in seen_steps:
                            seen_steps.add((entry.step, entry.state))
                            self.timeline.mark(entry.at, entry.step if entry.state == "done" else
                                               f"{entry.step} {entry.state}")
                        state.step = f"{entry.step} {entry.state}"
                for item in injector.applied[applied:]:
                    if item.started and "data plane out" in item.action:
                        self.timeline.mark(item.at, f"fault: {item.target} dark")
                    elif item.started and item.signal:
                        self.timeline.mark(item.at, f"{SIGNAL_PREFIX} {item.signal} posted, {item.late_s:.1f}s late")
                applied = len(injector.applied)
                cursor = self._signals(store, sites, cursor, injector)
                with stream.lock:
                    state.acknowledged = len(stream.ledger.acknowledged)
                    state.refused = sum(stream.ledger.refused.values())
                if self.on_update is not None:
                    self.on_update(state)
                self._stop.wait(0.25)

    def _signals(self, store: Any, sites: list[str], cursor: float, injector: FaultInjector) -> float:
        """Mark the first provider observation of each site and source that is not ok once the fault began: when
        the cloud's own signal (EC2's checks, AWS Health, ...) reached the orchestrator. Returns the next cursor."""
        fault_at = next((a.at for a in injector.applied if a.started and "data plane out" in a.action), None)
        if fault_at is None:
            return time.time()
        for obs in store.observations(min(cursor, fault_at), sites):
            key = (obs.subject, obs.source)
            if obs.source.startswith("provider:") and obs.at >= fault_at and key not in self.signals_seen \
                    and obs.status.value in ("down", "degraded"):
                self.signals_seen[key] = (obs.at, obs.status.value)
                self.timeline.mark(obs.at, f"{SIGNAL_PREFIX} {obs.source} says {obs.subject} {obs.status.value}, "
                                           f"{obs.at - fault_at:.1f}s after the fault")
        return time.time() - 2.0  # observations may be stored a little after they were made

    def _engine_phase(self, client: HttpEngineClient, bed: Testbed) -> tuple[str, str]:
        assert bed.replicas is not None
        best: tuple[int, str, str] | None = None
        for name in ("spot-aws", "spot-gcp", "spot-azure"):
            try:
                status = client.status(bed.replicas.replica(name))
            except EngineError:
                continue
            if status.role is Role.PRIMARY:
                self.primaries_seen.add(name)
                if best is None or status.epoch > best[0]:
                    best = (status.epoch, name, status.phase.value)
        return (best[1], best[2]) if best else ("", "unreachable")

    def _old_primary_refuses(self, bed: Testbed, client: HttpEngineClient) -> bool:
        """After the faults end (the old primary's process thawed), it must not acknowledge a write."""
        assert bed.replicas is not None
        time.sleep(1.0)
        current, _ = self._engine_phase(client, bed)
        for name in ("spot-aws", "spot-gcp", "spot-azure"):
            if name == current:
                continue
            try:
                answer = client.submit_order(bed.replicas.replica(name), client_order_id=f"zombie-{name}",
                                             account="drill", market="BTC-USDT", side="buy", qty="1", price="1",
                                             type="limit")
            except EngineError:
                continue
            if answer.accepted:
                return False
        return True

    # ---- the report ---------------------------------------------------------------------------------------

    def _conclude(self, bed: Testbed, client: HttpEngineClient, ledger: Any, injector: FaultInjector,
                  zombie_refused: bool) -> DrillResult:
        assert bed.replicas is not None
        loaded = load_config(bed.config_path)
        display = parse_timezone(loaded.topology.display_timezone)
        primary, phase = self._engine_phase(client, bed)
        journal = paged(client.journal, bed.replicas.replica(primary)) if primary else []
        trades = paged(client.trades, bed.replicas.replica(primary)) if primary else []
        lost = missing_or_moved(ledger, journal) if primary else dict.fromkeys(ledger.acknowledged, (0, None))
        by_phase = trades_by_phase(journal, trades)
        fault_at = next((a.at for a in injector.applied if a.started and "data plane out" in a.action), None)
        first_fault = next((f for f in self.scenario.faults if f.kind.value in ("outage", "silent_outage",
                                                                                 "flapping")), None)
        orders = {"acknowledged": len(ledger.acknowledged), "lost": len(lost),
                  "refused_by_reason": dict(sorted(ledger.refused.items())), "unknown_outcome": ledger.unknown,
                  "trades_during_protection": by_phase["protection"], "trades_while_halted": by_phase["halted"],
                  "trades_while_open": by_phase["open"]}
        with loaded.open_store() as store:
            incidents = [i for i in store.incidents() if i.kind == "failover"]
            report: IncidentReport | None = None
            if incidents:
                incident = incidents[-1]
                detail: dict[str, Any] = {"orders": orders, "drill": {"scenario": self.scenario.name,
                                                                      "speed": self.options.speed}}
                if fault_at is not None:
                    detail["fault_at"] = fault_at
                    detail["fault"] = f"{first_fault.kind.value} of {first_fault.site}" if first_fault else ""
                store.update_incident(incident.id, detail=detail, at=time.time())
                report = build_report(store, incident.id, display)
            failovers = len(incidents)
        figures: dict[str, Any] = dict(report.figures) if report else {
            "detection_s": None, "halt_s": None, "time_to_new_primary_s": None, "protection_s": None,
            "orders_acknowledged": orders["acknowledged"], "orders_lost": orders["lost"],
            "orders_refused": orders["refused_by_reason"], "trades_during_protection": orders[
                "trades_during_protection"], "trades_while_halted": orders["trades_while_halted"]}
        figures.update({"failovers": failovers, "final_primary": primary, "final_phase": phase,
                        "max_primaries": 1 if zombie_refused else 2})
        figures.update(self._signal_figures(injector, fault_at))
        figures.update(self._rejoin_figures(figures))
        expected = self.scenario.expect.get("failovers")
        invariants = {
            "no acknowledged order lost": figures["orders_lost"] == 0,
            "no trade in protection": figures["trades_during_protection"] == 0,
            "no trade while halted": figures["trades_while_halted"] == 0,
            "never two primaries": zombie_refused,
            "trading open at the end": phase == "open",
        }
        if expected is not None:
            invariants[f"failovers == {expected}"] = failovers == expected
        if self.options.rejoin:
            invariants["three replicas in sync after the rejoin"] = bool(self.rejoin_stage and
                                                                         self.rejoin_stage.in_sync)
        window = self.scenario.topology.protection.duration
        notes = [f"time compressed {self.options.speed:g}x: a {format_duration(window)} protection window lasts "
                 f"{format_duration(self.compressed(window))}", *injector.skipped, *self._rejoin_notes()]
        result = DrillResult(self.scenario.name, report.incident if report else None, figures, invariants, [], notes)
        result.files = self._write(result, report, display)
        return result

    # ---- `--rejoin` ---------------------------------------------------------------------------------------

    def _quarantine(self) -> float:
        return drill_quarantine(self.scenario.topology.policy.quarantine, self.options.speed)

    def _rejoin(self, bed: Testbed, stream: OrderStream) -> RejoinStage | None:
        """Rejoin the old primary (the last failover's source) once its site is out of quarantine, the order
        stream still running; stopped before the replicas are compared."""
        assert bed.replicas is not None
        with load_config(bed.config_path).open_store() as store:
            incidents = [i for i in store.incidents() if i.kind == "failover" and i.source]
        if not incidents or incidents[-1].source is None:
            stream.stop()
            return None

        def progress(text: str) -> None:
            self.state.step = text
            if self.on_update is not None:
                self.on_update(self.state)

        site = bed.config()["engines"][incidents[-1].engine]["replicas"][incidents[-1].source]["site"]
        withdrawn = site_back(bed, site)
        self.timeline.mark(time.time(), f"{site} back")
        stage = rejoin_old_primary(bed.config_path, bed.replicas.token_file, incidents[-1].source,
                                   self.timeline.mark, progress, before_sync=stream.stop)
        stage.notes[:0] = [f"{site} back when the drill stopped its faults: " + ", ".join(withdrawn)]
        stage.count_orders(stream.ledger.acknowledged.values())
        return stage

    def _rejoin_figures(self, figures: dict[str, Any]) -> dict[str, Any]:
        if not self.options.rejoin:
            return {}
        stage = self.rejoin_stage or RejoinStage("")
        reduced = figures.get("reduced_redundancy_s")
        return {**stage.figures(), "reduced_redundancy_scenario_s":
                None if reduced is None else round(reduced * self.options.speed, 1)}

    def _rejoin_notes(self) -> list[str]:
        if not self.options.rejoin:
            return []
        scenario = self.scenario.topology.policy.quarantine
        notes = [f"quarantine shortened to {format_duration(self._quarantine())} (the scenario's "
                 f"{format_duration(scenario)} would last {format_duration(self.compressed(scenario))} at "
                 f"{self.options.speed:g}x)"]
        if self.rejoin_stage is None:
            return [*notes, "rejoin: no failover, nothing to rejoin"]
        return [*notes, *self.rejoin_stage.notes]

    def _signal_figures(self, injector: FaultInjector, fault_at: float | None) -> dict[str, Any]:
        """How late each provider signal came after the data plane went out: posted in the fake (the scenario's
        provider_delay, compressed), and first seen by the orchestrator (`None`: not within the drill)."""
        if fault_at is None:
            return {}
        posted = {item.signal: item.at - fault_at for item in injector.applied if item.started and item.signal}
        seen: dict[str, float] = {}
        for (_, source), (at, _) in sorted(self.signals_seen.items(), key=lambda kv: kv[1][0]):
            seen.setdefault(source, at - fault_at)
        figures: dict[str, Any] = {}
        for source in sorted({*posted, *seen}):
            if source in posted:
                figures[f"{source} posted_s"] = round(posted[source], 3)
            figures[f"{source} seen_s"] = round(seen[source], 3) if source in seen else None
        return figures

    def _write(self, result: DrillResult, report: IncidentReport | None, display: tzinfo) -> list[Path]:
        out = self.options.out
        lines = [f"# Drill: {self.scenario.name} ({'three daemons on etcd' if self.options.ha else 'one daemon'})",
                 "", self.scenario.description, "", *[f"- {note}" for note in result.notes], "",
                 "| invariant | held |", "|---|---|",
                 *[f"| {name} | {'yes' if held else '**NO**'} |" for name, held in result.invariants.items()], "",
                 "| figure | value |", "|---|---|",
                 *[f"| {k} | {v} |" for k, v in result.figures.items() if not isinstance(v, dict)], ""]
        if report is not None:
            lines.append(render_markdown(report))
        markdown = out / "drill-report.md"
        markdown.write_text("\n".join(lines), encoding="utf-8")
        document = {"scenario": self.scenario.name, "incident": result.incident, "figures": result.figures,
                    "invariants": result.invariants, "notes": result.notes,
                    "report": report.to_json() if report else None}
        data = out / "drill-report.json"
        data.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        chart = render_png(self.timeline, out / "drill-timeline.png",
                           f"failover drill: {self.scenario.name} (time compressed {self.options.speed:g}x)", display)
        (out / "drill-timeline.json").write_text(json.dumps(
            {"lanes": {n: lane.spans for n, lane in self.timeline.lanes.items()}, "markers": self.timeline.markers},
            indent=1), encoding="utf-8")
        return [markdown, data, chart]

    def _write_config_copy(self, bed: Testbed) -> list[Path]:
        """A config whose store is the drill's, so that `failover report INCIDENT --config drill-failover.yaml`
        reads the same incident (SQLite drills; an HA drill's etcd is gone once it ends)."""
        if self.options.ha:
            return []
        target = self.options.out / "drill-failover.yaml"
        target.write_text(bed.config_path.read_text(encoding="utf-8"), encoding="utf-8")
        return [target]


__all__ = ["Drill", "DrillOptions", "DrillResult", "DrillState", "resolve_scenario"]

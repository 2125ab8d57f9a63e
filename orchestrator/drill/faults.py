"""A scenario's faults, compressed in time, applied to the local testbed as a cloud would show them.

The simulator's `expand` turns each fault into atoms (data plane out, provider reports out, latency, ...). Here
each atom becomes a real change: a replica process frozen with SIGSTOP (its data centre is dark: connections hang)
and thawed with SIGCONT, AWS's zone and instance status impaired in moto, a GCP zone marked DOWN or an Azure VM
reported unavailable in the fakes, a cloud API answering 503. Atoms with no honest equivalent on one machine
(probe loss, an observer's own partition, replication lag) are listed as skipped, never faked silently.

The provider's own reports come late, as in the seed's outage (hk-2022: the status page 25 minutes behind): when a
scenario's `provider_delay` has passed, the cloud's outage signal is posted in its fake, dated from when the data
centre was lost, as the clouds date theirs: an open EC2 issue in AWS Health, a confirmed incident in GCP Service
Health, an Unavailable Resource Health status in Azure. Each is an `Applied` whose `signal` names the source that
will carry it (`provider:aws-health`), so the drill can show both moments: posted, and seen by the orchestrator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.sim.faults import Atom, Effect, expand
from orchestrator.sim.scenario import Scenario
from orchestrator.testbed.world import GCP_ZONE, Testbed

SIGNALS = {"aws": "provider:aws-health", "gcp": "provider:gcp-service-health",
           "azure": "provider:azure-resource-health"}  # the source each cloud's outage signal is read as


@dataclass(frozen=True, slots=True)
class Applied:
    at: float  # wall clock
    action: str
    target: str
    started: bool  # True: the atom began; False: it ended
    signal: str = ""  # a provider outage signal posted (or closed): the source it is read as
    late_s: float = 0.0  # drill seconds since the data plane went out, for a provider signal


@dataclass
class FaultInjector:
    """Runs the atoms of `scenario` from `origin` (scenario seconds) at `speed` scenario seconds per second."""

    bed: Testbed
    scenario: Scenario
    speed: float
    origin: float = 0.0
    probe_timeout: float = 0.15
    applied: list[Applied] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _began: float = 0.0
    _epoch: float = 0.0  # wall clock at _began
    _frozen: dict[str, int] = field(default_factory=dict)

    def atoms(self) -> list[Atom]:
        found = [atom for index, fault in enumerate(self.scenario.faults) for atom in expand(fault, index)]
        return sorted((a for a in found if a.end > self.origin), key=lambda a: a.start)

    def wall(self, scenario_seconds: float) -> float:
        """Drill seconds from the start of the run at which a scenario time falls."""
        return max(0.0, (scenario_seconds - self.origin) / self.speed)

    def start(self) -> FaultInjector:
        self._began, self._epoch = time.monotonic(), time.time()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for site in list(self._frozen):  # leave nothing frozen behind
            self._frozen[site] = 1
            self._data_plane(site, out=False)

    def _run(self) -> None:
        events: list[tuple[float, bool, Atom]] = []
        for atom in self.atoms():
            events.append((self.wall(atom.start), True, atom))
            events.append((self.wall(atom.end), False, atom))
        events.sort(key=lambda e: (e[0], not e[1]))
        for offset, starting, atom in events:
            if self._stop.wait(max(0.0, offset - (time.monotonic() - self._began))):
                return
            self._apply(atom, starting)

    # ---- one atom ------------------------------------------------------------------------------------------

    def _apply(self, atom: Atom, starting: bool) -> None:
        if atom.effect is Effect.PROVIDER_REPORTS_OUT:
            self.applied.append(self._provider_reports(atom, starting))
            return
        actions: dict[Effect, Callable[[str, bool, float], str | None]] = {
            Effect.DATA_PLANE_OUT: lambda site, on, _: self._data_plane(site, out=on),
            Effect.LATENCY: lambda site, on, latency: (self._data_plane(site, out=on) if latency > self.probe_timeout
                                                       else "slower answers below the probe timeout: no effect"),
            Effect.API_ERRORS: lambda site, on, status: self._api_errors(site, on, int(status)),
        }
        action = actions.get(atom.effect)
        if action is None:
            if starting:
                self.skipped.append(f"{atom.effect.value} on {atom.target}: not reproducible on one machine")
            return
        note = action(atom.target, starting, atom.value)
        self.applied.append(Applied(time.time(), note or atom.effect.value, atom.target, starting))

    def first_report(self) -> float | None:
        """Drill seconds at which the first provider report is due (None: the scenario has none)."""
        due = [self.wall(a.start) for a in self.atoms() if a.effect is Effect.PROVIDER_REPORTS_OUT]
        return min(due, default=None)

    def _impact_start(self, report: Atom) -> float:
        """Scenario seconds at which the data plane went out for the fault a provider report belongs to."""
        outs = [a.start for a in self.atoms() if a.fault == report.fault and a.effect is Effect.DATA_PLANE_OUT
                and a.start <= report.start]
        return max(outs, default=report.start)

    def _replica_on(self, site: str) -> str | None:
        for engine in self.bed.config()["engines"].values():
            for name, replica in engine["replicas"].items():
                if replica["site"] == site:
                    return str(name)
        return None

    def _data_plane(self, site: str, *, out: bool) -> str | None:
        """Nested atoms (an outage inside a flap) keep the replica frozen until the last one ends."""
        replica = self._replica_on(site)
        if replica is None or self.bed.replicas is None:
            return None
        depth = self._frozen.get(site, 0) + (1 if out else -1)
        if out and depth == 1:
            self.bed.replicas.pause(replica)
        elif not out and depth == 0:
            self.bed.replicas.resume(replica)
        if depth <= 0:
            self._frozen.pop(site, None)
        else:
            self._frozen[site] = depth
        return f"data plane {'out' if out else 'back'} ({replica} {'frozen' if out else 'thawed'})"

    def _provider_reports(self, atom: Atom, starting: bool) -> Applied:
        """The cloud's API reports the site impaired (zone and instance checks), and its outage signal is posted,
        dated from the loss of the data plane; both are withdrawn when the atom ends."""
        site = atom.target
        provider = self.bed.config()["sites"][site]["provider"]
        impact = self._epoch + self.wall(self._impact_start(atom))
        ends = self._epoch + self.wall(atom.end)
        posted: str | None = None
        if provider == "aws":
            self.bed.impair_aws(starting)
            posted = self.bed.post_aws_health(starting, impact if starting else None)
        elif provider == "gcp" and self.bed.gcp is not None:
            self.bed.gcp.set_zone(GCP_ZONE, "DOWN" if starting else "UP")
            inject = getattr(self.bed.gcp, "inject_service_health_event", None)
            if starting and inject is not None:
                inject(GCP_ZONE, impact, ends)  # closes itself at the atom's end
        elif provider == "azure" and self.bed.azure is not None:
            self.bed.azure.set_vm("spot-engine-azure", health="Unavailable" if starting else "Available")
            inject = getattr(self.bed.azure, "inject_resource_health", None)
            if inject is not None:
                inject("spot-engine-azure", *(("Unavailable", "Unplanned") if starting else ("Available", "")))
        now = time.time()
        action = f"{provider} API reports {site} {'impaired' if starting else 'available'}" + (
            f"; {posted}" if posted else "")
        return Applied(now, action, site, starting, SIGNALS.get(provider, ""), max(0.0, now - impact))

    def _api_errors(self, site: str, on: bool, status: int) -> str:
        provider = self.bed.config()["sites"][site]["provider"]
        fake = {"gcp": self.bed.gcp, "azure": self.bed.azure}.get(provider)
        if fake is None:
            return f"{provider} API errors: moto cannot be made to fail (skipped)"
        if on:
            fake.fail_next(status, count=1_000_000)
        else:
            fake.clear_faults()
        return f"{provider} API {'answers ' + str(status) if on else 'recovered'}"

"""The simulated clouds' adapters with the time their calls take: `SimProvider` and `SimRouter`.

Why subclasses of the in-memory adapters (`providers.local`) rather than a wrapper: every public method the runbook
calls (`fence`, `start`, `instance_state`, `point_to`, `current_target`) stays the production code path, with its
deadlines, retries and polling; only the hooks that stand for one request to the cloud's API spend the request's
latency (`orchestrator.sim.latency`), and a stop or start is given its own drawn duration before it is asked for.

What is timed, and what is not:
- the runbook's reads and writes: a lifecycle read (`instance_state`, also each poll of a fence waiting for the
  machine to stop), a stop or start request, a DNS read or change, each one API request (`<cloud>.api`,
  `<cloud>.dns_api`);
- how long the machine takes to stop or start once asked (`<cloud>.stop`: the fence, AWS's forced stop, GCP's stop,
  Azure's power-off; `<cloud>.start`);
- when a DNS change reaches resolvers (`<cloud>.dns_propagation`): the record reads back at once (Route 53 answers a
  PENDING change with the new value, and the runbook's check reads it so), but the simulated clients resolve the
  old address until the change is in sync;
- not the health polls (`observe`): in production they run on threads of their own, off the cycle's path
  (drivers/provider_watch.py); the simulator polls inline, and timing them would hold up its cycle as no
  production cycle is held up.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.model import DnsTarget
from orchestrator.sim.latency import Latencies
from providers.base import InstanceState
from providers.local import LocalProvider, LocalRouter


class SimProvider(LocalProvider):
    """A site on a simulated cloud whose lifecycle calls take time."""

    def __init__(self, *args: Any, latency: Latencies, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency = latency
        self._cloud_name = self.site.provider

    def _subject(self, instance: str) -> str:
        return f"{self.site.name}/{instance}"

    def instance_state(self, instance: str) -> InstanceState:
        read = super().instance_state
        return self.latency.call(f"{self._cloud_name}.api", self._subject(instance), lambda: read(instance))

    def _start(self, instance: str) -> None:
        self._transition("start", instance, super()._start)

    def _stop(self, instance: str) -> None:
        self._transition("stop", instance, super()._stop)

    def _transition(self, verb: str, instance: str, ask: Any) -> None:
        """One request to the API; the machine then takes its own drawn time to get there."""
        subject = self._subject(instance)
        takes = self.latency.draw(f"{self._cloud_name}.{verb}", subject, self._clock())
        if verb == "start":
            self.cloud.start_time = takes
        else:
            self.cloud.stop_time = takes
        self.latency.call(f"{self._cloud_name}.api", subject, lambda: ask(instance))


class SimRouter(LocalRouter):
    """DNS on a simulated cloud: each request takes time, and a change reaches resolvers only once it is in sync."""

    def __init__(self, *, latency: Latencies, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency

    def _current_target(self, dns: DnsTarget) -> str | None:
        read = super()._current_target
        return self.latency.call(f"{self.cloud.name}.dns_api", dns.record, lambda: read(dns))

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        write = super()._point_to
        self.latency.call(f"{self.cloud.name}.dns_api", dns.record, lambda: self._change(dns, address, write))

    def _change(self, dns: DnsTarget, address: str, write: Any) -> None:
        """Write the record, then date its entry in the history clients resolve through to when it is in sync
        everywhere (never before an entry already there: the history stays in time order)."""
        history = self.cloud.records.get((dns.zone_id, dns.record), [])
        before = len(history)
        write(dns, address)
        history = self.cloud.records.get((dns.zone_id, dns.record), [])
        if len(history) != before + 1:
            return  # nothing written (the API failed, or the record already pointed there)
        written, value = history[-1]
        synced = written + self.latency.draw(f"{self.cloud.name}.dns_propagation", dns.record, written)
        history[-1] = (max(synced, history[-2][0]) if len(history) > 1 else synced, value)

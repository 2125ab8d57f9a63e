"""Detection policy presets, so that `failover simulate --policy` and the benchmark compare like with like.

Why presets and not free parameters: the benchmark's point is a side-by-side of our defaults against the published
defaults of tools people already use, on identical worlds (same seed, same faults, same order flow). Each preset
only replaces detection settings of the scenario's topology (`dataclasses.replace` on `Policy` and
`ProbeSettings`); sites, engines, protection window and safety rules stay as configured.

- `default`: the configuration as written.
- `route53`: Route 53 health checks' defaults: a 30 s request interval, 3 failures to declare unhealthy.
- `route53-fast`: Route 53's "fast" 10 s interval, 3 failures.
- `patroni`: loop_wait 10 s and ttl 30 s: the leader key lapses after three missed 10 s renewals, modelled as a
  10 s interval with a failure threshold of 3.
- `naive`: fail over on the first failed probe from anyone: threshold 1, quorum 1, no observer isolation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from orchestrator.core.model import Topology
from orchestrator.errors import ConfigError


def _detection(interval: float | None = None, threshold: int | None = None, quorum: int | None = None,
               isolation: float | None = None) -> Callable[[Topology], Topology]:
    def apply(topology: Topology) -> Topology:
        policy, probes = topology.policy, topology.probes
        if threshold is not None:
            policy = replace(policy, failure_threshold=threshold)
        if quorum is not None:
            policy = replace(policy, quorum=quorum)
        if isolation is not None:
            policy = replace(policy, isolation_fraction=isolation)
        if interval is not None:
            probes = replace(probes, interval=interval, timeout=min(probes.timeout, interval / 2))
        return replace(topology, policy=policy, probes=probes)

    return apply


PRESETS: dict[str, Callable[[Topology], Topology]] = {
    "default": lambda topology: topology,
    "route53": _detection(interval=30.0, threshold=3),
    "route53-fast": _detection(interval=10.0, threshold=3),
    "patroni": _detection(interval=10.0, threshold=3),
    "naive": _detection(threshold=1, quorum=1, isolation=1.0),  # a share > 1.0 of subjects never fails
}


def apply_policy(topology: Topology, name: str) -> Topology:
    """The topology with preset `name` applied; ConfigError naming the known presets otherwise."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown policy {name!r}; known: {', '.join(PRESETS)}")
    return preset(topology)

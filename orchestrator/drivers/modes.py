"""The ways a controller runs, as one table: a daemon, a probe agent, a cron run, an operator's command, a simulation.

Each mode is a row of what it does differently (`Behaviour`); what comes from the configuration or the command line
(who it is, the lease, the hooks, which vantage point it probes from) is `ControllerSettings`. A controller is
built from a mode and its settings, so no caller spells out a set of flags that could disagree with its mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.config import LoadedConfig

CRON_PROVIDER_WAIT = 2.0  # seconds a cron run waits for the cloud APIs; a slower one is left for the next run


class Mode(StrEnum):
    DAEMON = "daemon"  # the cycle on an interval; leads when it can
    AGENT = "agent"  # a probe agent (`daemon --observe-only`): probes and records, never leads
    CRON = "cron"  # `failover check`: one cycle per process, memory carried in the store
    OPERATOR = "operator"  # a human's command driving one runbook (`execute`, `approve`)
    SIMULATION = "simulation"  # a virtual clock: nothing on threads, results independent of timing


@dataclass(frozen=True, slots=True)
class Behaviour:
    observe_only: bool = False  # never takes the lease, only records what it sees
    persist_observations: bool = True  # write what it sees to the store, for the other vantage points
    carry_health_in_store: bool = False  # each run starts from the last run's hysteresis and reading position
    background_threads: bool = True  # cloud APIs polled, and the lease renewed, on threads of their own
    provider_wait: float = 0.0  # how long a cycle waits for cloud API polls still running
    clock_check: bool = False  # heartbeat, compare clocks, refuse to lead when ours is the odd one out
    publish_verdicts: bool = True  # a display copy of the verdicts for `status` and `plan`


MODES: dict[Mode, Behaviour] = {
    Mode.DAEMON: Behaviour(clock_check=True),
    Mode.AGENT: Behaviour(observe_only=True, clock_check=True),
    Mode.CRON: Behaviour(carry_health_in_store=True, provider_wait=CRON_PROVIDER_WAIT),
    Mode.OPERATOR: Behaviour(persist_observations=False, provider_wait=CRON_PROVIDER_WAIT),
    Mode.SIMULATION: Behaviour(persist_observations=False, background_threads=False, publish_verdicts=False),
}


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """What a controller is told by its configuration and its command line."""

    identity: str = "orchestrator"  # its name in the leader lease and the heartbeats
    lease_ttl: float = 10.0
    provider_interval: float = 30.0  # how often each cloud API is polled (0: every cycle)
    remote_observations: bool = False  # read what the other vantage points wrote to the shared store
    vantage: str = "orchestrator"  # the vantage point it probes from
    max_clock_offset: float = 5.0
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, loaded: LoadedConfig, mode: Mode, *, identity: str,
                    vantage: str = "orchestrator") -> ControllerSettings:
        """Every mode reads every source it is configured with: the probe agents at the configured vantage points
        (through the store), and the other orchestrators when the store is one several hosts share."""
        from orchestrator.store import shared_between_hosts

        config, topology = loaded.config, loaded.topology
        return cls(
            identity=identity, lease_ttl=config.daemon.lease_ttl,
            provider_interval=0.0 if mode is Mode.CRON else topology.probes.provider_interval,
            remote_observations=shared_between_hosts(loaded.store_url) or bool(topology.probes.vantage_points),
            vantage=vantage, max_clock_offset=config.daemon.max_clock_offset,
            pre_hooks=tuple(config.notifications.pre_failover), post_hooks=tuple(config.notifications.post_failover),
        )

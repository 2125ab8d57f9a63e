"""A validated configuration → the core's immutable `Topology`."""

from __future__ import annotations

from orchestrator.config.models import EngineConfig, FailoverConfig
from orchestrator.core.gray import GrayAction, GrayObjective
from orchestrator.core.model import (
    Approval,
    AutoRejoin,
    DnsTarget,
    Engine,
    Policy,
    ProbeSettings,
    ProtectionSettings,
    Replica,
    Site,
    Topology,
)


def to_topology(config: FailoverConfig) -> Topology:
    """The core's immutable view of a validated configuration."""
    sites = {
        name: Site(
            name=name,
            provider=site.provider,
            region=site.region,
            zones=tuple(site.zones),
            endpoint_url=site.endpoint_url,
            options=site.model_extra or {},
        )
        for name, site in config.sites.items()
    }
    engines = {name: _engine(name, engine) for name, engine in config.engines.items()}
    policy = config.policy
    return Topology(
        sites=sites,
        engines=engines,
        policy=Policy(
            failure_threshold=policy.failure_threshold,
            quorum=policy.quorum,
            flap_count=policy.flap_count,
            flap_window=policy.flap_window,
            max_lag_on_failover=policy.max_lag_on_failover,
            min_failover_interval=policy.min_failover_interval,
            approval=Approval(policy.approval),
            prefer_other_provider=policy.prefer_other_provider,
            step_deadline=policy.step_deadline,
            suspect_timeout=policy.suspect_timeout,
            quorum_may_count_cloud_apis=policy.quorum_may_count_cloud_apis,
            gray=None if policy.gray is None else GrayObjective(
                availability=policy.gray.availability, window=policy.gray.window,
                latency_p99_factor=policy.gray.latency_p99_factor, action=GrayAction(policy.gray.action)),
            quarantine=policy.quarantine,
            auto_rejoin=AutoRejoin(policy.auto_rejoin.enabled, policy.auto_rejoin.after, policy.auto_rejoin.retry,
                                   policy.auto_rejoin.max_concurrent),
        ),
        probes=ProbeSettings(
            interval=config.probes.interval,
            timeout=config.probes.timeout,
            vantage_points=tuple(config.probes.vantage_points),
            provider_interval=config.probes.provider_interval,
        ),
        protection=ProtectionSettings(
            duration=config.protection_window.duration, allow=tuple(config.protection_window.allow)
        ),
        display_timezone=config.display_timezone,
    )


def _engine(name: str, engine: EngineConfig) -> Engine:
    replicas = tuple(
        Replica(r_name, name, r.site, r.instance, r.control_url, priority)
        for priority, (r_name, r) in enumerate(engine.replicas.items())
    )
    dns = engine.dns
    target = DnsTarget(dns.provider, dns.zone_id, dns.record, dns.ttl, dns.endpoint_url, dns.model_extra or {}) \
        if dns else None
    return Engine(name, engine.primary, replicas, target)

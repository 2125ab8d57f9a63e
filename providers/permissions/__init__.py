"""Would the cloud let us fail over? Ask it, without changing anything (`failover plan --check-permissions`).

A dry run that only reads proves little: the credential CI holds may read every instance and still be refused the
stop that fences the old primary. Each cloud has a way to ask about a write without making it, and this package uses
it on every instance and DNS zone a failover of the engine touches:

- AWS: the EC2 writes themselves with `DryRun=True` (`DryRunOperation` = allowed, `UnauthorizedOperation` =
  refused), and the reads as the adapter makes them;
- GCP: `testIamPermissions` on each instance (get, start, stop) and, through Resource Manager, on the project (the
  region, zone and operation reads);
- Azure: the permissions API (`permissions.list_for_resource` on each VM, `list_for_resource_group` on its group),
  whose actions and not-actions are matched as Azure matches them (`actions.allows`);
- DNS (Route 53, Cloud DNS, Azure DNS): read access to the zone and the record, through the router itself.

`failover replace`'s launch (EC2 RunInstances with tags on create, Compute instances.insert, Azure VM createOrUpdate
with its disk and NIC) is a separate group, asked only when asked for (`--for replace` or `--for all`, `check_launch`):
the credential a failover runs with need not be able to make machines, and a CI dry run of the failover must not
fail for a permission the failover never uses.

Each answer is a `Grant`: allowed, refused, or unknown (the question could not be asked: an API down, an instance
not found). Refused and unknown both block: a CI run must fail on what would fail for real. Each cloud's module
builds its own client through the adapter's credential chain; the cloud SDKs are imported only there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.core.errors import FailoverError, ProviderAuthError
from orchestrator.core.model import Engine, Topology
from providers.base import CloudProvider
from providers.traffic import TrafficRouter


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission asked of one resource: `allowed` True, False (refused) or None (could not be asked)."""

    where: str  # "site aws-hk: instance spot-engine-hk", "route53: zone engine.example.internal"
    permission: str  # as the cloud names it: "ec2:StopInstances", "compute.instances.stop", ".../start/action"
    allowed: bool | None
    detail: str = ""

    @property
    def verdict(self) -> str:
        return {True: "allowed", False: "refused", None: "unknown"}[self.allowed]

    def line(self) -> str:
        return f"{self.verdict:8} {self.permission}  {self.where}" + (f" ({self.detail})" if self.detail else "")


def check_engine(engine: Engine, providers: Mapping[str, CloudProvider],
                 routers: Mapping[str, TrafficRouter]) -> list[Grant]:
    """Every permission a failover of `engine` needs, asked of each cloud: each replica's instance on its site, and
    the engine's DNS zone. Never raises for a cloud's answer: a failure to ask is an unknown `Grant`."""
    grants: list[Grant] = []
    by_site: dict[str, list[str]] = {}
    for replica in engine.replicas:
        by_site.setdefault(replica.site, []).append(replica.instance)
    for site, instances in by_site.items():
        provider = providers.get(site)
        if provider is not None:
            grants += check_site(provider, instances)
    router = routers.get(engine.name)
    if engine.dns is not None and router is not None:
        grants += check_dns(router, engine)
    return grants


def check_site(provider: CloudProvider, instances: list[str]) -> list[Grant]:
    """The site's cloud asked about each instance; a provider kind with no permission model (the in-memory cloud)
    needs none."""
    if provider.kind == "aws":
        from providers.permissions.aws import check_ec2

        return check_ec2(provider, instances)
    if provider.kind == "gcp":
        from providers.permissions.gcp import check_compute

        return check_compute(provider, instances)
    if provider.kind == "azure":
        from providers.permissions.azure import check_vms

        return check_vms(provider, instances)
    return []


def check_dns(router: TrafficRouter, engine: Engine) -> list[Grant]:
    """Read access to the engine's zone and record, through the router: what `switch_traffic` reads first."""
    dns = engine.dns
    if dns is None:
        return []
    where = f"{router.scope}: zone {dns.zone_id} record {dns.record}"
    permission = {"aws": "route53:ListResourceRecordSets", "gcp": "dns.resourceRecordSets.list",
                  "azure": "Microsoft.Network/dnsZones/recordsets/read",
                  "aws-arc": "route53-recovery-cluster:GetRoutingControlState"}.get(router.kind, "read the record")
    try:
        router.current_target(dns)
    except ProviderAuthError as error:
        return [Grant(where, permission, False, str(error))]
    except FailoverError as error:
        return [Grant(where, permission, None, str(error))]
    return [Grant(where, permission, True), *_dns_writes(router, engine, where)]


def _dns_writes(router: TrafficRouter, engine: Engine, where: str) -> list[Grant]:
    """The writes `switch_traffic` makes, where the DNS service can be asked about them: Cloud DNS's
    testIamPermissions and Azure's permissions API on the zone (Route 53 has no dry run for a change)."""
    from providers.permissions.required import AZURE_DNS, GCP_DNS

    dns = engine.dns
    assert dns is not None
    try:
        if router.kind == "gcp":
            from providers.dns_gcp import CloudDnsRouter

            assert isinstance(router, CloudDnsRouter)
            held = router.held_permissions(dns, list(GCP_DNS))
            return [Grant(where, p, p in held) for p in GCP_DNS]
        if router.kind == "azure":
            from providers.dns_azure import AzureDnsRouter
            from providers.permissions.actions import allows

            assert isinstance(router, AzureDnsRouter)
            actions, not_actions = router.effective_permissions(dns)
            return [Grant(where, a, allows(actions, not_actions, a)) for a in AZURE_DNS]
    except ProviderAuthError as error:
        return [Grant(where, "the zone's permissions", False, str(error))]
    except FailoverError as error:
        return [Grant(where, "the zone's permissions", None, str(error))]
    return []


def check_launch(topology: Topology, providers: Mapping[str, CloudProvider]) -> list[Grant]:
    """What `failover replace` needs on each site it could start a replica on (each site with `launch` options), asked
    of each cloud as `check_site` asks the failover's (`failover plan --check-permissions --for replace`). Its other
    calls (reading and starting instances, the rejoin) are the failover's own, asked by `check_engine`. A cloud with
    no launcher (the in-memory one) needs nothing."""
    grants: list[Grant] = []
    for name, provider in providers.items():
        settings = getattr(getattr(provider, "options", None), "launch", None)
        if settings is None:
            continue
        if provider.kind == "aws":
            from providers.permissions.aws import check_ec2_launch

            instances = [r.instance for e in topology.engines.values() for r in e.replicas if r.site == name]
            grants += check_ec2_launch(provider, settings, instances)
        elif provider.kind == "gcp":
            from providers.permissions.gcp import check_compute_launch

            grants += check_compute_launch(provider, settings)
        elif provider.kind == "azure":
            from providers.permissions.azure import check_vm_launch

            grants += check_vm_launch(provider, settings)
    return grants


def blocking(grants: list[Grant]) -> list[Grant]:
    """The grants that block a failover: refused, or not known."""
    return [grant for grant in grants if grant.allowed is not True]

"""Starting a new machine for a replica (`failover replace`), through each cloud's own create call.

Why a module beside the adapters rather than a hook in them: a launch is rare (a replica lost for good), needs the
site's `launch` options (providers/options.py) and nothing of the health polling, and must never run by accident
inside a cycle. So each launcher borrows its adapter's counted, retried, mapped calls (`_read`, `_write`, the
session or client the adapter already built) and adds two things: `find`, the instance already carrying an
idempotency key, and `create`, one create call that carries the key.

Idempotency, the property `failover replace` is resumable on: the key (derived by the driver from the engine, the
replica, the site and how many times it was replaced before) is written on the instance itself, where a crash
cannot lose it: an EC2 tag `failover-key` (and EC2's own `ClientToken`), a GCP label `failover-key` (and Compute's
`requestId`), an Azure tag `failover-key` on a VM whose name is derived from the key (a PUT of the same name is the
same VM). `launch` looks for the key first and creates only when nothing carries it.

- EC2: `run_instances` from a launch template (or an AMI and an instance type), `describe_instances` filtered by
  `tag:failover-key`.
- Compute: `POST zones/{z}/instances` (an Operation, polled like start/stop), `sourceInstanceTemplate` when a
  template is configured; `GET zones/{z}/instances?filter=labels.failover-key="KEY"`.
- Azure: `virtual_machines.begin_create_or_update` with the NIC made from a `networkInterfaceConfigurations` entry
  (so no separate network call), awaited through the SDK's poller; `virtual_machines.list` by tag.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from orchestrator.core.errors import ConfigError, ProviderError
from orchestrator.core.model import Site
from providers.base import CloudProvider

KEY_TAG = "failover-key"
REPLICA_TAG = "failover-replica"
LIVE = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class LaunchedInstance:
    """A machine made (or found) for a replica: `instance` is what the configuration's `instance` field would name
    (an EC2 id, a GCP `zone/name`, an Azure VM name); `created` is False when it was found by its key."""

    instance: str
    name: str
    private_ip: str | None
    created: bool

    def control_url(self, template: str) -> str:
        """The replica's control URL from the site's `control_url` template."""
        if "{private_ip}" in template and not self.private_ip:
            raise ProviderError(f"instance {self.instance} has no private IP yet for control_url {template}")
        return template.replace("{private_ip}", self.private_ip or "").replace("{name}", self.name)


def machine_name(replica: str, key: str) -> str:
    """A name every cloud accepts (GCP's is the strictest: lowercase, a letter first, at most 63), unique per key."""
    base = re.sub(r"[^a-z0-9-]+", "-", replica.lower()).strip("-") or "replica"
    if not base[0].isalpha():
        base = f"r-{base}"
    return f"{base[:50]}-{key[:8]}"


class Launcher(ABC):
    """Finds or creates one site's machine for a key, through the site's adapter."""

    def __init__(self, provider: CloudProvider, settings: Any) -> None:
        self.provider, self.settings = provider, settings

    @property
    def control_url_template(self) -> str:
        return str(self.settings.control_url)

    def launch(self, replica: str, key: str, *, deadline: float) -> LaunchedInstance:
        """The machine carrying `key`, created if none does, once the cloud reads it running (one found stopped is
        started: a machine made by an earlier run is never made again)."""
        with self.provider._deadline(deadline):
            found = self.find(key)
            launched = found if found is not None else self.create(machine_name(replica, key), replica, key)
        if not self.provider.dry_run:
            self.provider.start(launched.instance, deadline=deadline)
            refreshed = self.find(key)
            if refreshed is not None:  # the private IP is known once it runs
                launched = LaunchedInstance(launched.instance, launched.name, refreshed.private_ip, launched.created)
        return launched

    @abstractmethod
    def find(self, key: str) -> LaunchedInstance | None:
        """The live instance carrying `key`, or None."""

    @abstractmethod
    def create(self, name: str, replica: str, key: str) -> LaunchedInstance:
        """One create call carrying `key`; returns once the cloud has accepted it (not necessarily running)."""


def ec2_launch_params(settings: Any, site: Site, tags: list[dict[str, str]]) -> dict[str, Any]:
    """The `RunInstances` parameters of one launch (without its idempotency token): the launch and the permission
    dry run (`providers.permissions.aws`) send the same ones, so the dry run asks about the call that will be made."""
    params: dict[str, Any] = {"MinCount": 1, "MaxCount": 1,
                              "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]}
    if settings.launch_template is not None:
        field = "LaunchTemplateId" if settings.launch_template.startswith("lt-") else "LaunchTemplateName"
        params["LaunchTemplate"] = {field: settings.launch_template, "Version": settings.launch_template_version}
    else:
        params["ImageId"] = settings.image_id
    if settings.instance_type:
        params["InstanceType"] = settings.instance_type
    if settings.subnet_id:
        params["SubnetId"] = settings.subnet_id
    if settings.security_group_ids:
        params["SecurityGroupIds"] = list(settings.security_group_ids)
    zone = settings.zone or (site.zones[0] if site.zones else None)
    if zone:
        params["Placement"] = {"AvailabilityZone": zone}
    return params


class Ec2Launcher(Launcher):
    def find(self, key: str) -> LaunchedInstance | None:
        aws: Any = self.provider
        answer = aws._read("ec2.describe_instances", aws._sdk("ec2", "describe_instances"), subject=f"key {key}",
                           Filters=[{"Name": f"tag:{KEY_TAG}", "Values": [key]},
                                    {"Name": "instance-state-name", "Values": list(LIVE)}])
        found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
        if not found:
            return None
        first = min(found, key=lambda i: str(i.get("LaunchTime") or ""))
        name = next((t["Value"] for t in first.get("Tags", []) if t.get("Key") == "Name"), first["InstanceId"])
        return LaunchedInstance(str(first["InstanceId"]), str(name), first.get("PrivateIpAddress"), False)

    def create(self, name: str, replica: str, key: str) -> LaunchedInstance:
        aws: Any = self.provider
        tags = [{"Key": "Name", "Value": name}, {"Key": KEY_TAG, "Value": key}, {"Key": REPLICA_TAG, "Value": replica}]
        params = {**ec2_launch_params(self.settings, aws.site, tags), "ClientToken": key}
        answer = aws._write("ec2.run_instances", aws._sdk("ec2", "run_instances"), subject=f"replica {replica}",
                            **params)
        if answer is None:  # a dry run
            return LaunchedInstance(f"(new {name})", name, None, True)
        made = answer["Instances"][0]
        return LaunchedInstance(str(made["InstanceId"]), name, made.get("PrivateIpAddress"), True)


class GceLauncher(Launcher):
    @property
    def zone(self) -> str:
        gcp: Any = self.provider
        zone = self.settings.zone or (gcp.site.zones[0] if gcp.site.zones else None)
        if not zone:
            raise ConfigError(f"site {gcp.site.name}: launch.zone: required when the site lists no zones")
        return str(zone)

    def find(self, key: str) -> LaunchedInstance | None:
        gcp: Any = self.provider
        answer = gcp._get("compute.instances.list", f"zones/{self.zone}/instances", f"key {key}",
                          {"filter": f'labels.{KEY_TAG}="{key}"'})
        items = answer.get("items") or []
        if not items:
            return None
        item = items[0]
        ip = next((nic.get("networkIP") for nic in item.get("networkInterfaces") or () if nic.get("networkIP")), None)
        return LaunchedInstance(f"{self.zone}/{item['name']}", str(item["name"]), ip, False)

    def create(self, name: str, replica: str, key: str) -> LaunchedInstance:
        gcp: Any = self.provider
        settings, zone = self.settings, self.zone
        body: dict[str, Any] = {"name": name, "labels": {KEY_TAG: key, REPLICA_TAG: machine_name(replica, "")[:-1]}}
        params = {"requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"failover-replace/{key}"))}
        if settings.instance_template is not None:
            params["sourceInstanceTemplate"] = settings.instance_template
        if settings.machine_type is not None:
            body["machineType"] = f"zones/{zone}/machineTypes/{settings.machine_type}"
        if settings.source_image is not None:
            body["disks"] = [{"boot": True, "autoDelete": True,
                              "initializeParams": {"sourceImage": settings.source_image}}]
        if settings.instance_template is None or settings.subnetwork:
            nic = {"network": settings.network, **({"subnetwork": settings.subnetwork} if settings.subnetwork else {})}
            body["networkInterfaces"] = [nic]

        def insert(*, timeout: float, **_: Any) -> dict[str, Any]:
            return _post_json(gcp, f"zones/{zone}/instances", body, params, timeout)

        operation = gcp._write("compute.instances.insert", insert, subject=f"replica {replica}", zone=zone,
                               instance=name, key=key)
        instance = f"{zone}/{name}"
        if operation is not None:
            gcp._wait_operation(instance, zone, operation)
        return LaunchedInstance(instance, name, None, True)


def _post_json(gcp: Any, path: str, body: Mapping[str, Any], params: Mapping[str, str],
               timeout: float) -> dict[str, Any]:
    """A POST with a JSON body through the adapter's authorized session (its `_call` sends none)."""
    from google.api_core import exceptions as gexc

    session = gcp._http()
    url = f"{gcp._endpoint}/compute/v1/projects/{quote(gcp.project, safe='')}/{path}"
    response = session.request("POST", url, params=params, json=dict(body), timeout=timeout)
    if response.status_code >= 400:
        raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]
    answer: dict[str, Any] = response.json()
    return answer


class AzureLauncher(Launcher):
    def find(self, key: str) -> LaunchedInstance | None:
        azure: Any = self.provider
        vms = azure._read("compute.virtual_machines.list", lambda **kw: list(azure._vms().list(**kw)),
                          subject=f"key {key}", resource_group_name=azure.resource_group)
        for vm in vms:
            if (vm.tags or {}).get(KEY_TAG) == key:
                return LaunchedInstance(str(vm.name), str(vm.name), None, False)
        return None

    def create(self, name: str, replica: str, key: str) -> LaunchedInstance:
        from azure.mgmt.compute import models

        azure: Any = self.provider
        settings = self.settings
        zone = settings.zone or (azure.site.zones[0] if azure.site.zones else None)
        nic = {"name": f"{name}-nic", "properties": {
            "primary": True, "deleteOption": "Delete",
            "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": settings.subnet_id}}}]}}
        vm = models.VirtualMachine({
            "location": azure.site.region, **({"zones": [zone]} if zone else {}),
            "tags": {KEY_TAG: key, REPLICA_TAG: replica},
            "properties": {
                "hardwareProfile": {"vmSize": settings.vm_size},
                "storageProfile": {"imageReference": {"id": settings.image_id},
                                   "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"}},
                "networkProfile": {"networkApiVersion": "2020-11-01", "networkInterfaceConfigurations": [nic]},
            },
        })
        poller = azure._write("compute.virtual_machines.begin_create_or_update", azure._sdk("begin_create_or_update"),
                              subject=f"replica {replica}", resource_group_name=azure.resource_group, vm_name=name,
                              parameters=vm)
        if poller is not None:
            deadline = azure._operation_deadline()
            try:
                poller.result(timeout=deadline.remaining())
            except Exception as exc:
                raise azure._mapped(exc, "compute.virtual_machines.begin_create_or_update", f"replica {replica}",
                                    deadline) from exc
            if not poller.done():
                raise ProviderError(f"{azure.scope}: VM {name}: create still in progress after {deadline.seconds:g}s")
        return LaunchedInstance(name, name, None, True)


LAUNCHERS: Mapping[str, type[Launcher]] = {"aws": Ec2Launcher, "gcp": GceLauncher, "azure": AzureLauncher}


def launcher_for(provider: CloudProvider) -> Launcher:
    """The site's launcher; `ConfigError` (exit 2) when its cloud cannot launch or the site has no `launch`."""
    site = provider.site
    cls = LAUNCHERS.get(provider.kind)
    if cls is None:
        raise ConfigError(f"site {site.name}: provider {provider.kind} cannot launch a replica (aws, gcp, azure can)")
    settings = getattr(getattr(provider, "options", None), "launch", None)
    if settings is None:
        raise ConfigError(f"site {site.name}: no launch options (sites.{site.name}.launch: see docs/replace.md)")
    return cls(provider, settings)

"""Azure: the permissions API (azure-mgmt-authorization) on each VM and on its resource group. It answers the
caller's effective permissions there (every role assignment's `actions` and `notActions`), which are matched against
what the adapter calls (`required.AZURE_VM`, `AZURE_GROUP`, and with `resource_health` on, the Resource Health read
of each VM) as Azure matches them (`actions.allows`).

The client is built as the adapter's: the site's injected credential, else DefaultAzureCredential (once per
process), and for a plain-http loopback endpoint a placeholder token with its own bearer policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.mgmt.authorization import AuthorizationManagementClient

from providers.azure import StaticTokenCredential, _default_credential, _LoopbackBearerPolicy
from providers.base import CloudProvider, loopback_http
from providers.calls import brief
from providers.permissions import Grant
from providers.permissions.actions import allows
from providers.permissions.required import (
    AZURE_GROUP,
    AZURE_LAUNCH,
    AZURE_LAUNCH_IMAGE,
    AZURE_LAUNCH_SUBNET,
    AZURE_RESOURCE_HEALTH,
    AZURE_VM,
)


def check_vms(provider: CloudProvider, instances: list[str]) -> list[Grant]:
    site = provider.site
    options = getattr(provider, "options", None)
    subscription = str(getattr(options, "subscription", ""))
    group = str(getattr(options, "resource_group", ""))
    per_vm = (*AZURE_VM, *(AZURE_RESOURCE_HEALTH if getattr(options, "resource_health", False) else ()))
    client = _client(provider, subscription)
    where = f"site {site.name}"
    grants = _ask(lambda: client.permissions.list_for_resource_group(resource_group_name=group), AZURE_GROUP,
                  f"{where}: resource group {group}")
    for instance in instances:
        vm_group, _, name = instance.rpartition("/")
        vm_group = vm_group or group
        grants += _ask(partial(client.permissions.list_for_resource, resource_group_name=vm_group,
                               resource_provider_namespace="Microsoft.Compute", parent_resource_path="",
                               resource_type="virtualMachines", resource_name=name),
                       per_vm, f"{where}: vm {vm_group}/{name}")
    return grants


def _client(provider: CloudProvider, subscription: str) -> Any:
    endpoint = provider.site.endpoint_url
    options: dict[str, Any] = {"retry_total": 0}
    credential = getattr(provider, "_credential", None)  # the adapter's injected credential (tests)
    if loopback_http(endpoint):
        credential = credential or StaticTokenCredential()
        options["authentication_policy"] = _LoopbackBearerPolicy(credential)
    elif credential is None:
        credential = _default_credential()
    if endpoint:
        options["base_url"] = endpoint
    return AuthorizationManagementClient(credential, subscription, **options)


def _ask(call: Callable[[], Iterable[Any]], wanted: tuple[str, ...], where: str) -> list[Grant]:
    try:
        permissions = list(call())
    except ClientAuthenticationError as error:
        return [Grant(where, action, False, brief(error, 160)) for action in wanted]
    except HttpResponseError as error:
        refused = error.status_code in (401, 403)
        return [Grant(where, action, False if refused else None, f"HTTP {error.status_code}") for action in wanted]
    except AzureError as error:
        return [Grant(where, action, None, brief(error, 160)) for action in wanted]
    actions = [a for p in permissions for a in (p.actions or [])]
    not_actions = [a for p in permissions for a in (p.not_actions or [])]
    return [Grant(where, action, allows(actions, not_actions, action)) for action in wanted]


def check_vm_launch(provider: CloudProvider, settings: Any) -> list[Grant]:
    """`failover replace`'s `virtualMachines/createOrUpdate`, asked of the permissions API: the VM, its OS disk and
    its NIC are made in the site's resource group; the NIC joins the launch's subnet and the disk is made from its
    image, each asked at the resource group that holds it (a role assigned on that group or above shows there; one
    assigned on the subnet or the image alone does not, and is reported refused)."""
    site = provider.site
    options = getattr(provider, "options", None)
    subscription = str(getattr(options, "subscription", ""))
    group = str(getattr(options, "resource_group", ""))
    client = _client(provider, subscription)
    where = f"site {site.name}: launch"
    grants = _ask(lambda: client.permissions.list_for_resource_group(resource_group_name=group), AZURE_LAUNCH,
                  f"{where} in resource group {group}")
    for resource, action in ((settings.subnet_id, AZURE_LAUNCH_SUBNET),
                             (settings.image_id, AZURE_LAUNCH_IMAGE["gallery" if "/galleries/" in
                                                                    settings.image_id.lower() else "managed"])):
        holder = _resource_group(resource) or group
        grants += _ask(partial(client.permissions.list_for_resource_group, resource_group_name=holder), (action,),
                       f"{where}: {resource.rsplit('/', 1)[-1]} in resource group {holder}")
    return grants


def _resource_group(resource_id: str) -> str | None:
    """The resource group an Azure resource id names (`/subscriptions/S/resourceGroups/G/...`), or None."""
    parts = resource_id.strip("/").split("/")
    lowered = [part.lower() for part in parts]
    if "resourcegroups" in lowered:
        at = lowered.index("resourcegroups") + 1
        return parts[at] if at < len(parts) else None
    return None

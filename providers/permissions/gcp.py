"""GCP: `testIamPermissions` on each instance (get, start, stop) and on the project, through Resource Manager (the
region, zone and zone-operation reads the adapter makes, and its outage signals' reads when they are on: Service
Health's `servicehealth.events.list`, and the host-error read's `compute.globalOperations.aggregatedList`, which is
what `GET aggregated/operations` needs). Each answers the subset of the asked permissions the
caller holds; asking needs no permission itself, so a refusal here is exactly what the adapter would meet.

The session is built as the adapter's: the site's injected credentials, else Application Default Credentials (one
look-up per process, `providers.gcp._default_credentials`), and anonymous credentials for a plain-http loopback
endpoint (a local fake, which then also serves the Resource Manager path).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import google.auth.exceptions
import requests
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession

from providers.base import CloudProvider, loopback_http
from providers.calls import brief
from providers.gcp import API_ENDPOINT, _default_credentials
from providers.permissions import Grant
from providers.permissions.required import (
    GCP_HOST_ERRORS,
    GCP_INSTANCE,
    GCP_LAUNCH,
    GCP_LAUNCH_TEMPLATE,
    GCP_PROJECT,
    GCP_SERVICE_HEALTH,
)

RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com"
TIMEOUT = 10.0


def check_compute(provider: CloudProvider, instances: list[str]) -> list[Grant]:
    site = provider.site
    options = getattr(provider, "options", None)
    project = str(getattr(options, "project", "") or "")
    where = f"site {site.name}"
    try:
        session = _session(provider)
    except google.auth.exceptions.GoogleAuthError as error:
        return [Grant(where, "google credentials", False, brief(error, 160))]
    compute = (site.endpoint_url or API_ENDPOINT).rstrip("/")
    manager = (site.endpoint_url or RESOURCE_MANAGER).rstrip("/")
    grants = _test(session, f"{manager}/v1/projects/{_seg(project)}:testIamPermissions", project_permissions(options),
                   f"{where}: project {project}")
    for instance in instances:
        zone, name = _zone_and_name(instance, site.zones)
        url = (f"{compute}/compute/v1/projects/{_seg(project)}/zones/{_seg(zone)}/instances/{_seg(name)}"
               "/testIamPermissions")
        grants += _test(session, url, GCP_INSTANCE, f"{where}: instance {zone}/{name}")
    return grants


def project_permissions(options: object) -> tuple[str, ...]:
    """What the adapter needs on the project: its reads, and each outage signal's read when the signal is on."""
    return (*GCP_PROJECT, *(GCP_SERVICE_HEALTH if getattr(options, "service_health", False) else ()),
            *(GCP_HOST_ERRORS if getattr(options, "host_errors", False) else ()))


def _session(provider: CloudProvider) -> AuthorizedSession:
    credentials: Any = getattr(provider, "_credentials", None)  # the adapter's injected credentials (tests)
    if credentials is None:
        anonymous = loopback_http(provider.site.endpoint_url)
        credentials = AnonymousCredentials() if anonymous else _default_credentials()[0]  # type: ignore[no-untyped-call]
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


def _zone_and_name(instance: str, zones: tuple[str, ...]) -> tuple[str, str]:
    """`zone/name` as configured, else the site's first zone (a bare name in a site of several zones is asked of
    the first; the adapter's look-up across zones is a read this check does not repeat)."""
    if "/" in instance:
        zone, name = instance.split("/", 1)
        return zone, name
    return (zones[0] if zones else ""), instance


def _test(session: AuthorizedSession, url: str, wanted: tuple[str, ...], where: str) -> list[Grant]:
    try:
        response = session.post(url, json={"permissions": list(wanted)}, timeout=TIMEOUT)
    except (requests.exceptions.RequestException, google.auth.exceptions.GoogleAuthError) as error:
        return [Grant(where, permission, None, brief(error, 160)) for permission in wanted]
    if response.status_code in (401, 403):
        return [Grant(where, permission, False, f"HTTP {response.status_code}") for permission in wanted]
    if response.status_code >= 400:
        return [Grant(where, permission, None, f"HTTP {response.status_code}") for permission in wanted]
    held = set(response.json().get("permissions", []))
    return [Grant(where, permission, permission in held) for permission in wanted]


def _seg(value: str) -> str:
    return quote(value, safe="")


def check_compute_launch(provider: CloudProvider, settings: Any) -> list[Grant]:
    """`failover replace`'s `instances.insert`, asked of the project with `testIamPermissions` (the instance does not
    exist yet): what every launch needs, and from an instance template the template's own permissions."""
    site = provider.site
    project = str(getattr(getattr(provider, "options", None), "project", "") or "")
    where = f"site {site.name}: launch in project {project}"
    wanted = (*GCP_LAUNCH, *(GCP_LAUNCH_TEMPLATE if settings.instance_template is not None else ()))
    try:
        session = _session(provider)
    except google.auth.exceptions.GoogleAuthError as error:
        return [Grant(where, permission, False, brief(error, 160)) for permission in wanted]
    manager = (site.endpoint_url or RESOURCE_MANAGER).rstrip("/")
    return _test(session, f"{manager}/v1/projects/{_seg(project)}:testIamPermissions", wanted, where)

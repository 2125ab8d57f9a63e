"""AWS: ask EC2 about the stop and start a failover makes with `DryRun=True`, and make the reads the adapter makes.

EC2 answers a dry run with an error either way: `DryRunOperation` when the call would have been allowed,
`UnauthorizedOperation` when not (an invalid or expired key fails before that, with its own code). The client is
built through the adapter's credential chain (`providers.aws._session`, the site's `profile`), one per site.
Instances named by their `Name` tag are looked up first (`ec2:DescribeInstances`, a real read).

With `health_api` on, the AWS Health signal is asked too: the Health API has no dry run, so it is a real read
(`DescribeEvents` for EC2, `maxResults=10`, one page), at the endpoints the adapter reads (the active one, then the
passive one when the first cannot answer at all). `SubscriptionRequiredException` (an account without a Business
support plan) counts as refused: the signal would never answer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import botocore.exceptions

from providers.aws import AUTH_CODES, HEALTH_REGIONS, _config, _session
from providers.base import CloudProvider
from providers.calls import brief
from providers.permissions import Grant

REFUSED = AUTH_CODES | {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "Forbidden",
                       "SubscriptionRequiredException"}
TIMEOUT = 10.0


def check_ec2(provider: CloudProvider, instances: list[str]) -> list[Grant]:
    site = provider.site
    options = getattr(provider, "options", None)
    profile = getattr(options, "profile", None)
    try:
        session = _session(profile, site.region, site.endpoint_url)
        ec2 = session.client("ec2", region_name=site.region, endpoint_url=site.endpoint_url, config=_config(TIMEOUT))
    except botocore.exceptions.BotoCoreError as error:
        return [Grant(f"site {site.name}", "ec2", False, brief(error))]
    where = f"site {site.name}"
    grants = [_ask(where, "ec2:DescribeAvailabilityZones", lambda: ec2.describe_availability_zones(DryRun=True)),
              _ask(where, "ec2:DescribeInstanceStatus", lambda: ec2.describe_instance_status(DryRun=True))]
    for name in instances:
        at = f"{where}: instance {name}"
        instance_id, grant = _resolve(ec2, name, at)
        grants.append(grant)
        if instance_id is None:
            continue
        at = f"{at} ({instance_id})" if instance_id != name else at
        grants += [_ask(at, "ec2:StopInstances",
                        partial(ec2.stop_instances, InstanceIds=[instance_id], Force=True, DryRun=True)),
                   _ask(at, "ec2:StartInstances", partial(ec2.start_instances, InstanceIds=[instance_id], DryRun=True))]
    if getattr(options, "health_api", False):
        grants.append(_health(session, provider, where))
    return grants


def _health(session: Any, provider: CloudProvider, where: str) -> Grant:
    """`health:DescribeEvents`, asked by reading one page of EC2 events at each endpoint in turn until one answers
    (an authorization answer from the first is final: the other endpoint would give the same)."""
    urls = tuple(getattr(getattr(provider, "options", None), "health_endpoint_urls", ()) or ())
    regions = HEALTH_REGIONS[:1] if len(urls) == 1 else HEALTH_REGIONS
    grant = Grant(where, "health:DescribeEvents", None, "no endpoint asked")
    for turn, region in enumerate(regions):
        endpoint = urls[turn] if turn < len(urls) else provider.site.endpoint_url
        at = f"{where}: AWS Health at {region}"
        try:
            health = session.client("health", region_name=region, endpoint_url=endpoint, config=_config(TIMEOUT))
        except botocore.exceptions.BotoCoreError as error:
            return Grant(at, "health:DescribeEvents", None, brief(error))
        grant = _ask(at, "health:DescribeEvents",
                     partial(health.describe_events, filter={"services": ["EC2"]}, maxResults=10))
        if grant.allowed is not None:
            return grant if grant.allowed is False else Grant(at, grant.permission, True)
    return grant


def _resolve(ec2: Any, name: str, where: str) -> tuple[str | None, Grant]:
    """The instance id (ids as they are, `Name` tags looked up) and the grant of the read that found it."""
    params: dict[str, Any] = ({"InstanceIds": [name]} if name.startswith("i-") else
                              {"Filters": [{"Name": "tag:Name", "Values": [name]},
                                           {"Name": "instance-state-name",
                                            "Values": ["pending", "running", "stopping", "stopped"]}]})
    try:
        answer = ec2.describe_instances(**params)
    except botocore.exceptions.ClientError as error:
        return None, _refusal(where, "ec2:DescribeInstances", error)
    except botocore.exceptions.BotoCoreError as error:
        return None, Grant(where, "ec2:DescribeInstances", None, brief(error))
    found = [str(i["InstanceId"]) for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
    if len(found) != 1:
        return None, Grant(where, "ec2:DescribeInstances", None, f"{len(found)} live instances named so")
    return found[0], Grant(where, "ec2:DescribeInstances", True)


def _ask(where: str, permission: str, call: Callable[[], Any]) -> Grant:
    try:
        call()
    except botocore.exceptions.ClientError as error:
        if _code(error) == "DryRunOperation":
            return Grant(where, permission, True)
        return _refusal(where, permission, error)
    except botocore.exceptions.BotoCoreError as error:
        return Grant(where, permission, None, brief(error))
    return Grant(where, permission, True, "answered without a dry run")


def _refusal(where: str, permission: str, error: botocore.exceptions.ClientError) -> Grant:
    code = _code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in REFUSED or status in (401, 403):
        return Grant(where, permission, False, code or f"HTTP {status}")
    return Grant(where, permission, None, f"{code or 'HTTP ' + str(status)}: {brief(error, 120)}")


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# --- `failover replace`: the launch, asked only with `--for replace` (providers/permissions/__init__.check_launch) ---

def check_ec2_launch(provider: CloudProvider, settings: Any, instances: list[str]) -> list[Grant]:
    """`ec2:RunInstances` asked with `DryRun=True` and the launch's own parameters (its template or image, subnet,
    security groups, zone, and the tags it writes on create), then `ec2:CreateTags` asked on its own, with a dry-run
    tag of one of the site's engine instances: EC2 answers a refused RunInstances without saying which permission was
    missing (tags on create, a template's instance profile), so the tag permission gets its own answer. A site with
    no engine instance to tag has the RunInstances answer for both."""
    from providers.launch import KEY_TAG, REPLICA_TAG, ec2_launch_params

    site = provider.site
    where = f"site {site.name}: launch"
    try:
        session = _session(getattr(getattr(provider, "options", None), "profile", None), site.region,
                           site.endpoint_url)
        ec2 = session.client("ec2", region_name=site.region, endpoint_url=site.endpoint_url, config=_config(TIMEOUT))
    except botocore.exceptions.BotoCoreError as error:
        return [Grant(where, "ec2:RunInstances", False, brief(error))]
    tags = [{"Key": KEY_TAG, "Value": "dry-run"}, {"Key": REPLICA_TAG, "Value": "dry-run"}]
    params = ec2_launch_params(settings, site, tags)
    run = _ask(where, "ec2:RunInstances", partial(ec2.run_instances, DryRun=True, **params))
    target = next((found for name in instances for found in [_resolve(ec2, name, where)[0]] if found), None)
    if target is None:
        return [run, Grant(where, "ec2:CreateTags", run.allowed, "asked within the RunInstances dry run (tags on "
                           "create): no engine instance on this site to ask on")]
    return [run, _ask(f"{where} (asked on {target})", "ec2:CreateTags",
                      partial(ec2.create_tags, Resources=[target], Tags=tags, DryRun=True))]

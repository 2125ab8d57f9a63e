"""What an adapter registers: the pydantic model of its own options, and where its class lives.

Why a module of its own, importing only pydantic: `failover config validate` checks every site's options against its
adapter's model and must not import a cloud SDK to do it (`google.cloud.compute_v1` alone takes ~1.7 s). So an
adapter is registered in two parts: an `AdapterSpec` (its options model, and its class named as a string) in a light
module named by an entry point, and the class itself, with its SDK, imported only when a site of that provider is
built. The built-in adapters' specs are below; `docs/extending.md` walks through registering another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from orchestrator.core.errors import ConfigError

NonEmpty = Annotated[str, Field(min_length=1)]


class OptionsModel(BaseModel):
    """The base of every adapter's options model: unknown keys are errors (a typo must never keep a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, options: Mapping[str, Any], where: str) -> Self:
        """`options` validated, or one `ConfigError` naming `where` and every problem (`site gcp-hk: project:
        required field is missing`). `failover config validate` reports the same problems at their lines."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as error:
            problems = [f"{'.'.join(map(str, item['loc'])) or '(options)'}: {item['msg']}" for item in error.errors()]
            raise ConfigError(f"{where}: {'; '.join(problems)}") from None


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter as the catalog knows it: `options` validates the keys a site (or DNS target) gives beyond the
    common ones, and `adapter` is `"package.module:ClassName"`, imported only when the first one is built."""

    options: type[OptionsModel]
    adapter: str


class NoOptions(OptionsModel):
    """The options of an adapter that has none: any key is refused."""


EndpointUrl = Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$")]
# Where a launched replica answers the control protocol: `{private_ip}` and `{name}` are filled in once it runs
LaunchUrl = Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$")]


class AwsLaunch(OptionsModel):
    """How `failover replace` starts a replica on an AWS site (providers/launch.py): a `launch_template` (id `lt-...`
    or name, at `launch_template_version`), or an `image_id` with an `instance_type`; `subnet_id`,
    `security_group_ids` and `zone` override the template's. `control_url` may use `{private_ip}` and `{name}`."""

    control_url: LaunchUrl
    launch_template: NonEmpty | None = None
    launch_template_version: NonEmpty = "$Default"
    image_id: NonEmpty | None = None
    instance_type: NonEmpty | None = None
    subnet_id: NonEmpty | None = None
    security_group_ids: tuple[NonEmpty, ...] = ()
    zone: NonEmpty | None = None

    @model_validator(mode="after")
    def _template_or_image(self) -> Self:
        if (self.launch_template is None) == (self.image_id is None):
            raise ValueError("give exactly one of launch_template and image_id")
        if self.image_id is not None and self.instance_type is None:
            raise ValueError("image_id needs instance_type")
        return self


class GcpLaunch(OptionsModel):
    """How `failover replace` starts a replica on a GCP site: an `instance_template`
    (`global/instanceTemplates/NAME`), or a `source_image` with a `machine_type`; in `zone` (default: the site's
    first), on `network` / `subnetwork`. `control_url` may use `{private_ip}` and `{name}`."""

    control_url: LaunchUrl
    instance_template: NonEmpty | None = None
    source_image: NonEmpty | None = None
    machine_type: NonEmpty | None = None
    network: NonEmpty = "global/networks/default"
    subnetwork: NonEmpty | None = None
    zone: NonEmpty | None = None

    @model_validator(mode="after")
    def _template_or_image(self) -> Self:
        if self.instance_template is None and (self.source_image is None or self.machine_type is None):
            raise ValueError("give instance_template, or source_image and machine_type")
        return self


class AzureLaunch(OptionsModel):
    """How `failover replace` starts a replica on an Azure site: a specialized `image_id` (a gallery image version
    with the engine installed: no OS profile, so no credential in the config) of `vm_size`, its NIC created on
    `subnet_id`, in `zone`. `control_url` may use `{name}` (the VM's host name in its virtual network)."""

    control_url: LaunchUrl
    image_id: NonEmpty
    vm_size: NonEmpty
    subnet_id: NonEmpty
    zone: NonEmpty | None = None


class AwsOptions(OptionsModel):
    """`profile`: a named profile of the AWS config files; without it, boto3's chain (environment, instance role).

    `health_api`: also read the AWS Health API (open and upcoming EC2 events for the site's region and zones) as the
    source `provider:aws-health`; off by default, as it needs a Business support plan or above. `signal_interval`:
    how often it is read (0s: with every poll of the site); `signal_stale_after`: an answer older than this (every
    endpoint failing since) has no vote. `health_endpoint_urls`: the active and the passive endpoint, for a fake or
    an emulator (default: AWS's own, us-east-1 then us-east-2). `fence`: `force_stop` (StopInstances with Force:
    the guest is not asked to shut down, which a host in trouble may never finish) or `stop` (the guest shuts down
    first: slower, for engines that must flush on the way down)."""

    profile: NonEmpty | None = None
    fence: Literal["force_stop", "stop"] = "force_stop"
    launch: AwsLaunch | None = None  # `failover replace` (docs/replace.md)
    health_api: bool = False
    health_endpoint_urls: tuple[EndpointUrl, ...] = Field(default=(), max_length=2)
    signal_interval: SignalDuration = 0.0
    signal_stale_after: SignalDuration = 300.0

    @model_validator(mode="after")
    def _stale_after_outlasts_interval(self) -> Self:
        if self.health_api and self.signal_stale_after < self.signal_interval:
            raise ValueError("signal_stale_after must be at least signal_interval (else every answer is stale)")
        return self


def _signal_duration(value: Any) -> Any:
    from orchestrator.core.durations import parse_duration

    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration string with a unit, e.g. 0s, 30s, 5m")


SignalDuration = Annotated[
    float,
    BeforeValidator(_signal_duration),
    Field(ge=0),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$", "examples": ["0s", "5m"]}),
]


class GcpOptions(OptionsModel):
    """`project`: the Google Cloud project that holds the site's instances.

    `fence`: `no_graceful_stop` (instances.stop with `noGracefulShutdown`: the guest gets no time to shut down) or
    `stop` (a plain stop, which honours the instance's graceful-shutdown period). `service_health`: also read
    Personalized Service Health (events for the site's region and zones) as the source
    `provider:gcp-service-health`; `host_errors`: also read Compute's host-error operations as the source
    `provider:gcp-host-errors` (a host error on a replica's instance within `host_error_window` is `down`).
    `signal_interval`: how often those two are read (0s: with every poll of the site); `signal_stale_after`: an
    answer older than this (every read failing since) has no vote."""

    project: NonEmpty
    fence: Literal["no_graceful_stop", "stop"] = "no_graceful_stop"
    launch: GcpLaunch | None = None  # `failover replace` (docs/replace.md)
    service_health: bool = True
    host_errors: bool = True
    host_error_window: SignalDuration = 600.0
    signal_interval: SignalDuration = 0.0
    signal_stale_after: SignalDuration = 300.0


class AzureOptions(OptionsModel):
    """`subscription` and `resource_group` that hold the site's virtual machines.

    `fence`: `power_off` (powerOff with `skipShutdown`: the guest is not asked to shut down; the VM stays
    allocated) or `deallocate` (graceful, releases the host: slower). `deallocate_after_fence`: once a power-off
    fence holds, begin a deallocate without waiting for it (stops compute billing; the VM counts as fenced
    throughout). `stop`: how a planned stop is made, `deallocate` or `power_off` (with a guest shutdown).
    `resource_health`: also read Azure Resource Health (`availabilityStatuses/current` of each VM) as the source
    `provider:azure-resource-health`; `signal_interval`: how often (0s: with every poll of the site);
    `signal_stale_after`: an answer older than this, or a status Azure last checked longer ago than this, has no
    vote."""

    subscription: NonEmpty
    resource_group: NonEmpty
    fence: Literal["power_off", "deallocate"] = "power_off"
    launch: AzureLaunch | None = None  # `failover replace` (docs/replace.md)
    deallocate_after_fence: bool = True
    stop: Literal["deallocate", "power_off"] = "deallocate"
    resource_health: bool = True
    signal_interval: SignalDuration = 0.0
    signal_stale_after: SignalDuration = 900.0


class Route53Options(OptionsModel):
    """`profile`: as for an AWS site; Route 53 is global, so a DNS target names no region. Here rather than in
    providers/dns_specs.py (where the router's spec is) because providers/aws.py, which holds the record logic,
    parses it too."""

    profile: NonEmpty | None = None


# Named by the entry points of pyproject.toml ([project.entry-points."failover.providers"], and "failover.routers" for
# LOCAL_DNS). The cloud DNS routers' specs are in providers/dns_specs.py, Route 53 ARC's in providers/arc_specs.py.
AWS = AdapterSpec(AwsOptions, "providers.aws:AwsProvider")
GCP = AdapterSpec(GcpOptions, "providers.gcp:GcpProvider")
AZURE = AdapterSpec(AzureOptions, "providers.azure:AzureProvider")
LOCAL = AdapterSpec(NoOptions, "providers.local:LocalProvider")
LOCAL_DNS = AdapterSpec(NoOptions, "providers.local:LocalRouter")

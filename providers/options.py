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
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class AwsOptions(OptionsModel):
    """`profile`: a named profile of the AWS config files; without it, boto3's chain (environment, instance role)."""

    profile: NonEmpty | None = None


class GcpOptions(OptionsModel):
    """`project`: the Google Cloud project that holds the site's instances."""

    project: NonEmpty


class AzureOptions(OptionsModel):
    """`subscription` and `resource_group` that hold the site's virtual machines."""

    subscription: NonEmpty
    resource_group: NonEmpty


class Route53Options(OptionsModel):
    """`profile`: as for an AWS site; Route 53 is global, so a DNS target names no region."""

    profile: NonEmpty | None = None


# Named by the entry points of pyproject.toml ([project.entry-points."failover.providers"] and "failover.routers").
AWS = AdapterSpec(AwsOptions, "providers.aws:AwsProvider")
GCP = AdapterSpec(GcpOptions, "providers.gcp:GcpProvider")
AZURE = AdapterSpec(AzureOptions, "providers.azure:AzureProvider")
LOCAL = AdapterSpec(NoOptions, "providers.local:LocalProvider")
ROUTE53 = AdapterSpec(Route53Options, "providers.aws:Route53Router")
LOCAL_DNS = AdapterSpec(NoOptions, "providers.local:LocalRouter")

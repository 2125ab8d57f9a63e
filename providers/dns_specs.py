"""The DNS routers' specs and options models: a light module (pydantic only), as providers/options.py is.

Why not beside each router: `failover config validate` loads the spec of every DNS target's router to check its
options, and must not import a cloud SDK to do so (tests/cli/test_import_cost.py holds it to that). So each router's
spec lives here, naming its class as a string, and the class with its SDK is imported only when a router is built.
Named by the `failover.routers` entry points of pyproject.toml.
"""

from __future__ import annotations

from providers.options import AdapterSpec, NonEmpty, OptionsModel, Route53Options


class CloudDnsOptions(OptionsModel):
    """`project`: the Google Cloud project that holds the managed zone (`zone_id` is the zone's name, or its DNS
    name with a dot, looked up once)."""

    project: NonEmpty


class AzureDnsOptions(OptionsModel):
    """`subscription` and `resource_group` that hold the DNS zone (`zone_id` is the zone's name,
    `engine.example.internal`)."""

    subscription: NonEmpty
    resource_group: NonEmpty


ROUTE53 = AdapterSpec(Route53Options, "providers.dns_aws:Route53Router")
CLOUD_DNS = AdapterSpec(CloudDnsOptions, "providers.dns_gcp:CloudDnsRouter")
AZURE_DNS = AdapterSpec(AzureDnsOptions, "providers.dns_azure:AzureDnsRouter")

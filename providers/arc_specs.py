"""The Route 53 ARC router's options and spec: a light module (pydantic only), as providers/dns_specs.py is.

Kept apart from dns_specs.py only because its entry point is not declared yet: register it in code
(`providers.register_router("aws-arc", ARC)`) or add `aws-arc = "providers.arc_specs:ARC"` to the
`failover.routers` entry points.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from providers.options import AdapterSpec, NonEmpty, OptionsModel


class ArcEndpoint(OptionsModel):
    """One of the cluster's regional data-plane endpoints, as `DescribeCluster` lists them."""

    url: NonEmpty
    region: NonEmpty


class ArcOptions(OptionsModel):
    """`cluster_endpoints`: the cluster's data-plane endpoints (five in a real cluster), tried in turn; `controls`:
    each address the engine can be served from, and the ARN of the routing control that sends traffic there (the
    Route 53 health check it gates fronts that address); `profile`: as for an AWS site."""

    cluster_endpoints: Annotated[list[ArcEndpoint], Field(min_length=1)]
    controls: Annotated[dict[str, NonEmpty], Field(min_length=2)]
    profile: NonEmpty | None = None


ARC = AdapterSpec(ArcOptions, "providers.dns_arc:ArcRouter")

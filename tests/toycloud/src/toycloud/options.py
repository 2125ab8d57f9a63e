"""The toy cloud's options, and its two registrations (docs/extending.md, "Add a cloud" step 1, "Add a DNS router"
step 1). Imports pydantic and failover's `providers.options` only: `failover config validate` imports this module,
never `toycloud.cloud`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from providers.options import AdapterSpec, OptionsModel


class ToyOptions(OptionsModel):
    """A toy site's own keys, beside `provider`, `region`, `zones` and `endpoint_url`."""

    state_dir: Annotated[str, Field(min_length=1)]  # where the toy cloud keeps its state: its "API endpoint"


class ToyDnsOptions(OptionsModel):
    """A toy DNS record's own keys, beside `provider`, `zone_id`, `record`, `ttl` and `endpoint_url`."""

    state_dir: Annotated[str, Field(min_length=1)]


TOY = AdapterSpec(ToyOptions, "toycloud.cloud:ToyProvider")
TOY_DNS = AdapterSpec(ToyDnsOptions, "toycloud.cloud:ToyRouter")

"""YAML configuration → validated, typed configuration → the core's `Topology` (docs/design.md §2).

Every problem is reported at once, each as `FILE:LINE: field.path: what was expected`, because an SRE fixing a
config at 3 a.m. should not have to run the validator ten times. The package reads in this order, one module each:
`reading` (the file and its YAML, screened, with each field's line), `secrets` (refused by key and by value),
`models` (pydantic: shapes and types) with `validation` (its errors, located), `adapters` (each site's and DNS
record's adapter and its own options, asked of the provider catalog), `checks` (the rules across fields),
`topology` (the core's view); `load` ties them together; `problems` and `addresses` serve them all. Every name used
outside the package is re-exported here.
"""

from orchestrator.config.addresses import is_loopback, parse_listen, store_url_problem
from orchestrator.config.checks import MIN_LEASE_TTL, ORCHESTRATOR_VANTAGE
from orchestrator.config.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    MAX_PROBLEMS,
    STORE_ENV,
    LoadedConfig,
    json_schema,
    load_config,
    resolve_config_path,
)
from orchestrator.config.models import (
    AuditConfig,
    DaemonConfig,
    DnsConfig,
    Duration,
    EngineConfig,
    FailoverConfig,
    ListenAddress,
    Name,
    NotificationsConfig,
    PolicyConfig,
    PositiveDuration,
    ProbesConfig,
    ProtectionConfig,
    ProviderName,
    ReplicaConfig,
    SiteConfig,
    StoreUrl,
    Url,
    WebhookConfig,
)
from orchestrator.config.problems import Problem, locate
from orchestrator.config.reading import (
    MAX_ALIASES,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_CHARS,
    parse_yaml,
    read_text,
)
from orchestrator.config.secrets import AWS_KEY_ID, SECRET_KEY, find_secret, redact
from orchestrator.config.topology import to_topology

__all__ = [
    "AWS_KEY_ID",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "MAX_ALIASES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_NUMBER_CHARS",
    "MAX_PROBLEMS",
    "MIN_LEASE_TTL",
    "ORCHESTRATOR_VANTAGE",
    "SECRET_KEY",
    "STORE_ENV",
    "AuditConfig",
    "DaemonConfig",
    "DnsConfig",
    "Duration",
    "EngineConfig",
    "FailoverConfig",
    "ListenAddress",
    "LoadedConfig",
    "Name",
    "NotificationsConfig",
    "PolicyConfig",
    "PositiveDuration",
    "ProbesConfig",
    "Problem",
    "ProtectionConfig",
    "ProviderName",
    "ReplicaConfig",
    "SiteConfig",
    "StoreUrl",
    "Url",
    "WebhookConfig",
    "find_secret",
    "is_loopback",
    "json_schema",
    "load_config",
    "locate",
    "parse_listen",
    "parse_yaml",
    "read_text",
    "redact",
    "resolve_config_path",
    "store_url_problem",
    "to_topology",
]

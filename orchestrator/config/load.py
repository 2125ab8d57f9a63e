"""Find, read, validate and convert a configuration file; every problem reported at once, redacted."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrator.config.adapters import adapter_problems, with_adapter_options
from orchestrator.config.addresses import store_url_problem
from orchestrator.config.checks import Comments, cross_checks
from orchestrator.config.models import FailoverConfig
from orchestrator.config.problems import locate
from orchestrator.config.reading import parse_yaml, read_text
from orchestrator.config.secrets import redact, secrets_in
from orchestrator.config.topology import to_topology
from orchestrator.config.validation import pydantic_problems
from orchestrator.core.model import Topology
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.store.base import StateStore

CONFIG_ENV = "FAILOVER_CONFIG"
STORE_ENV = "FAILOVER_STORE"  # overrides `store:` (a test, a drill, a one-off against another store)
DEFAULT_CONFIG = "failover.yaml"
MAX_PROBLEMS = 100  # every problem of a real file; not 50,000 lines for a file of junk


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and where it came from."""

    path: Path
    config: FailoverConfig
    topology: Topology

    @property
    def store_url(self) -> str:
        """The store URL; a relative SQLite path is taken relative to the config file, so cron's cwd is moot."""
        override = os.environ.get(STORE_ENV)
        if override is not None and (problem := store_url_problem(override)) is not None:
            raise ConfigError(f"${STORE_ENV}: {problem}")
        url = override or self.config.store
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.path.parent / url[len(prefix) :]).resolve())
        return url

    def open_store(self) -> StateStore:
        """The configured store, its audit head anchored where the configuration says: every command must use the
        same anchor, or `audit verify` would look for it in a place the daemon never wrote."""
        from orchestrator.store import open_store

        return open_store(self.store_url, audit_anchor=self.audit_head_path)

    @property
    def audit_head_path(self) -> Path | None:
        """`audit.head_file`, a relative path taken relative to the config file like the store's; None if unset."""
        head = self.config.audit.head_file
        return None if head is None else (self.path.parent / head).resolve()


def resolve_config_path(path: str | Path | None) -> Path:
    """`--config`, else `$FAILOVER_CONFIG`, else `./failover.yaml` (docs/design.md §8)."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read, validate and convert; raises one ConfigError listing every problem, one line each."""
    file = resolve_config_path(path)
    text = read_text(file, what="config")
    data, lines = parse_yaml(file, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the file must be a mapping of settings (version, sites, engines, ...)")
    problems = list(secrets_in(data, ()))
    config: FailoverConfig | None = None
    try:
        config = FailoverConfig.model_validate(data)
    except ValidationError as error:
        problems.extend(pydantic_problems(error))
    problems.extend(adapter_problems(data))
    if config is not None:
        problems.extend(cross_checks(config, Comments(text.splitlines(), lines)))
    if problems:
        # every line is redacted: pydantic echoes the values it refuses, and a refused value may be a secret
        report = [redact(locate(file, lines, p.path, p.message)) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            report.append(f"{file}: and {len(problems) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(report))
    assert config is not None
    return LoadedConfig(file, config, to_topology(config))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, for editors (`failover config schema`)."""
    schema = with_adapter_options(FailoverConfig.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "failover configuration"
    return schema

"""`failover release SITE`: end a site's quarantine by hand, before its healthy clock runs out, audited.

Why by hand: an operator may know what the probes cannot (the provider confirmed the repair, or the other sites are
worse) and need the site back as a failover target or rejoin host now. The release is stored and written to the
audit log with who, when and what was ended; a site not in quarantine, or not in the configuration, is refused
(exit 2) and changes nothing. The next cycle that judges the site down quarantines it again.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from orchestrator.cli.common import ConfigOption, console, load
from orchestrator.errors import ConfigError


def release(
    site: Annotated[str, typer.Argument(help="Site to take out of quarantine (a name from `sites:`).")],
    config: ConfigOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "",
) -> None:
    """End SITE's quarantine now: it may again be a failover target and a rejoin host. Audited."""
    from orchestrator.cli.operate_cmd import actor
    from orchestrator.core.phases import format_instant, parse_timezone

    loaded = load(config)
    if site not in loaded.topology.sites:
        known = ", ".join(sorted(loaded.topology.sites))
        raise ConfigError(f"site {site}: not in {loaded.path} (sites: {known})")
    now = time.time()
    with loaded.open_store() as store:
        ended = store.release_quarantine(site, actor(), now, reason=reason)
    display = parse_timezone(loaded.topology.display_timezone)
    console.print(f"released {site} from quarantine at {format_instant(now, display)} (down since "
                  f"{format_instant(ended.down_at, display)}, {ended.relapses} relapses); audited", markup=False)


def register(app: typer.Typer) -> None:
    app.command("release")(release)

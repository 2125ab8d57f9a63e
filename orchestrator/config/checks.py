"""The rules that span several fields, checked once the models accept the file: sites, quorum, engines, timing,
the daemon's lease and listener. Each yields located problems; none stops at the first."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from orchestrator.config.addresses import is_loopback, parse_listen
from orchestrator.config.models import FailoverConfig
from orchestrator.config.problems import Problem
from orchestrator.core.durations import format_duration
from orchestrator.core.phases import parse_timezone

ORCHESTRATOR_VANTAGE = "orchestrator"
MIN_LEASE_TTL = 2.0


def cross_checks(config: FailoverConfig, comments: Comments) -> Iterator[Problem]:
    try:
        parse_timezone(config.display_timezone)
    except ValueError as error:
        yield Problem(("display_timezone",), str(error))
    yield from _site_checks(config)
    yield from _quorum_checks(config, comments)
    yield from _engine_checks(config)
    yield from _timing_checks(config)
    yield from _daemon_checks(config)


def _site_checks(config: FailoverConfig) -> Iterator[Problem]:
    """What a site's adapter needs is its options model's business (`adapters.py`); here, what spans sites."""
    for position, vantage in enumerate(config.probes.vantage_points):
        if vantage != ORCHESTRATOR_VANTAGE and vantage not in config.sites:
            yield Problem(("probes", "vantage_points", position), f"unknown site {vantage!r}")
    providers = {site.provider for site in config.sites.values()}
    if config.require_multi_cloud and len(providers) < 2:
        yield Problem(
            ("sites",), f"require_multi_cloud is true but every site is on {', '.join(sorted(providers))}"
        )


def _quorum_checks(config: FailoverConfig, comments: Comments) -> Iterator[Problem]:
    """A quorum the data plane cannot reach alone waits for a cloud API's vote, and cloud APIs lag real outages by
    minutes to hours (the seed's provider confirmed its failure hours late): hole 5 of issue 11."""
    policy = config.policy
    data_plane = len(set(config.probes.vantage_points) | {ORCHESTRATOR_VANTAGE})
    override = ("policy", "quorum_may_count_cloud_apis")
    if policy.quorum > data_plane + 1:
        yield Problem(
            ("policy", "quorum"),
            f"{policy.quorum} exceeds the {data_plane + 1} independent sources (the orchestrator's host, "
            f"{data_plane - 1} vantage point(s), the cloud APIs)",
        )
    elif policy.quorum > data_plane and not policy.quorum_may_count_cloud_apis:
        yield Problem(
            ("policy", "quorum"),
            f"{policy.quorum} can only be reached with a cloud API's vote: the data plane has {data_plane} "
            f"source(s) (the orchestrator's host and {data_plane - 1} vantage point(s)), and cloud APIs lag real "
            "outages by minutes to hours; add vantage points or lower the quorum, or set "
            "policy.quorum_may_count_cloud_apis: true with the reason in a comment on that line",
        )
    if policy.quorum_may_count_cloud_apis and not comments.reason_at(override):
        yield Problem(
            override,
            "the override needs its reason in a comment on the same line, e.g. "
            "`quorum_may_count_cloud_apis: true  # why the cloud API's vote is trusted here`",
        )


@dataclass(frozen=True)
class Comments:
    """The raw lines of the file, for the few settings whose YAML comment is part of their meaning."""

    text_lines: list[str]
    lines: Mapping[tuple[str | int, ...], int]

    def reason_at(self, path: tuple[str | int, ...]) -> str:
        """The text of the comment on the line of `path`'s key ('' when there is none)."""
        line = self.lines.get(path)
        if line is None or line > len(self.text_lines):
            return ""
        return _comment(self.text_lines[line - 1])


def _comment(line: str) -> str:
    """A YAML comment starts with `#` at the start of the line or after a blank, outside a quoted scalar (in which
    `''` and `\\"` do not close the quotes)."""
    quote, previous, position = "", "", 0
    while position < len(line):
        char = line[position]
        if quote == '"' and char == "\\":
            position += 1  # the escaped character
        elif quote == "'" and line.startswith("''", position):
            position += 1
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"" and previous in ("", ":", "[", "{", ",", "-"):
            quote = char
        elif char == "#" and (position == 0 or line[position - 1] in " \t"):
            return line[position + 1 :].strip()
        if not char.isspace():
            previous = char
        position += 1
    return ""


def _engine_checks(config: FailoverConfig) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    for engine_name, engine in config.engines.items():
        base = ("engines", engine_name)
        if engine.primary not in engine.replicas:
            yield Problem((*base, "primary"), f"{engine.primary!r} is not one of its replicas")
        used: dict[str, str] = {}
        for replica_name, replica in engine.replicas.items():
            where = (*base, "replicas", replica_name)
            if replica_name in owners or replica_name in config.sites:
                other = owners.get(replica_name, "a site")
                yield Problem(where, f"replica name {replica_name!r} is already used by {other}")
            owners[replica_name] = f"engine {engine_name}"
            if replica.site not in config.sites:
                yield Problem((*where, "site"), f"unknown site {replica.site!r}")
            elif replica.site in used:
                yield Problem((*where, "site"), f"site {replica.site!r} already holds replica {used[replica.site]!r}")
            used[replica.site] = replica_name
        clouds = {config.sites[r.site].provider for r in engine.replicas.values() if r.site in config.sites}
        if config.require_multi_cloud and len(clouds) < 2:
            yield Problem((*base, "replicas"), "require_multi_cloud is true but all replicas are on one provider")


def _timing_checks(config: FailoverConfig) -> Iterator[Problem]:
    probes, policy = config.probes, config.policy
    if probes.timeout >= probes.interval:
        yield Problem(("probes", "timeout"), "must be shorter than probes.interval")
    detection = probes.interval * policy.failure_threshold
    if detection * 10 > config.protection_window.duration + 1e-9:
        yield Problem(
            ("probes", "interval"),
            f"interval x failure_threshold = {detection:g}s must be well below (<= 1/10 of) the "
            f"protection window of {config.protection_window.duration:g}s",
        )
    if policy.flap_window < detection * policy.flap_count:
        yield Problem(("policy", "flap_window"), "too short to ever see flap_count downs at this probe interval")
    if policy.suspect_timeout <= detection:
        yield Problem(
            ("policy", "suspect_timeout"),
            f"{format_duration(policy.suspect_timeout)} must be longer than probes.interval x failure_threshold = "
            f"{format_duration(detection)}: a source cannot even call the primary down sooner, so every suspect "
            "would page",
        )


def _daemon_checks(config: FailoverConfig) -> Iterator[Problem]:
    daemon = config.daemon
    cycle = daemon.cycle_interval or config.probes.interval
    floor = max(3 * cycle, MIN_LEASE_TTL)
    if daemon.lease_ttl < floor - 1e-9:
        yield Problem(
            ("daemon", "lease_ttl"),
            f"{format_duration(daemon.lease_ttl)} is too short: at least 3 cycles of {format_duration(cycle)} and "
            f"{format_duration(MIN_LEASE_TTL)}, so {format_duration(floor)} here; the leader renews once per cycle "
            "and must renew several times per TTL, or one slow cycle hands leadership away mid-runbook",
        )
    host, _ = parse_listen(daemon.listen)
    if not daemon.listen_public and not is_loopback(host):
        yield Problem(
            ("daemon", "listen"),
            f"{host} is not a loopback address: /status and /metrics would be reachable from the network; "
            "listen on 127.0.0.1, or set daemon.listen_public: true if that is meant",
        )

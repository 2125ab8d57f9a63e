"""YAML configuration → validated, typed configuration → the core's `Topology` (DESIGN §2).

Every problem is reported at once, each as `FILE:LINE: field.path: what was expected`, because an SRE fixing a
config at 3 a.m. should not have to run the validator ten times. pydantic checks shapes and types; the cross-field
rules live in `_cross_checks`; pyyaml's node marks give the line of each field.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from orchestrator.core.durations import format_duration, parse_duration
from orchestrator.core.model import (
    Approval,
    DnsTarget,
    Engine,
    Policy,
    ProbeSettings,
    ProtectionSettings,
    Replica,
    Site,
    Topology,
)
from orchestrator.core.phases import parse_timezone
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.store.base import StateStore

CONFIG_ENV = "FAILOVER_CONFIG"
STORE_ENV = "FAILOVER_STORE"  # overrides `store:` (a test, a drill, a one-off against another store)
DEFAULT_CONFIG = "failover.yaml"
ORCHESTRATOR_VANTAGE = "orchestrator"

# Limits that keep a hostile or mistaken file from hurting the process (issue 12): a real configuration is a few KiB,
# a few hundred values, about 5 levels deep, with no alias.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_ALIASES = 64
MAX_NODES = 50_000
MAX_NUMBER_CHARS = 64
MIN_LEASE_TTL = 2.0
MAX_PROBLEMS = 100  # every problem of a real file; not 50,000 lines for a file of junk
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built: 10x faster

# Keys that hold credentials. Credentials come from each cloud's standard chain, never from this file.
SECRET_KEY = re.compile(
    r"(secret|password|passwd|private_key|access_key|api_key|token(?!_file)|credential|client_secret|sas_key|"
    r"connection_string)",
    re.IGNORECASE,
)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration string with a unit, e.g. 500ms, 1s, 20m, 1h")


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$", "examples": ["500ms", "20m"]}),
]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _store_url(value: str) -> str:
    problem = store_url_problem(value)
    if problem:
        raise ValueError(problem)
    return value


StoreUrl = Annotated[
    str,
    AfterValidator(_store_url),
    WithJsonSchema({"type": "string", "pattern": r"^(sqlite:///[^?#]+|etcd://[^?#@]+)$",
                    "examples": ["sqlite:///failover-state.db", "etcd://10.0.0.1:2379,10.1.0.1:2379/failover"]}),
]


def _listen(value: str) -> str:
    parse_listen(value)
    return value


ListenAddress = Annotated[
    str, AfterValidator(_listen), WithJsonSchema({"type": "string", "examples": ["127.0.0.1:9464", "[::1]:9464"]})
]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
ProviderName = Literal["aws", "gcp", "azure", "local"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SiteConfig(_Strict):
    """One failure domain. Credentials: AWS profile/env, Google ADC, Azure DefaultAzureCredential."""

    provider: ProviderName
    region: Annotated[str, Field(min_length=1)]
    zones: list[Annotated[str, Field(min_length=1)]] = []
    endpoint_url: Url | None = None
    profile: str | None = None
    project: str | None = None
    subscription: str | None = None
    resource_group: str | None = None


class ProbesConfig(_Strict):
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 0.5
    vantage_points: list[str] = []
    provider_interval: PositiveDuration = 30.0  # how often each cloud's API is asked (control-plane health)


class PolicyConfig(_Strict):
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    quorum: Annotated[int, Field(ge=1, le=10)] = 2
    flap_count: Annotated[int, Field(ge=2, le=100)] = 3
    flap_window: Duration = 1800.0
    max_lag_on_failover: Annotated[int, Field(ge=0)] = 0
    min_failover_interval: Duration = 3600.0
    approval: Literal["auto", "manual"] = "auto"
    prefer_other_provider: bool = True
    step_deadline: PositiveDuration = 60.0
    suspect_timeout: PositiveDuration = 30.0  # a suspect primary undecided for longer pages a human
    quorum_may_count_cloud_apis: bool = False  # only with the reason in a comment on the same line


class ProtectionConfig(_Strict):
    duration: Duration = 1200.0
    allow: list[Literal["cancel", "post_only", "add_margin"]] = ["cancel", "post_only", "add_margin"]


class ReplicaConfig(_Strict):
    site: Name
    instance: Annotated[str, Field(min_length=1)]
    control_url: Url


class DnsConfig(_Strict):
    provider: ProviderName
    zone_id: Annotated[str, Field(min_length=1)]
    record: Annotated[str, Field(min_length=1)]
    ttl: Annotated[int, Field(ge=1, le=86400)] = 30
    endpoint_url: Url | None = None


class EngineConfig(_Strict):
    primary: Name
    replicas: Annotated[dict[Name, ReplicaConfig], Field(min_length=2)]
    dns: DnsConfig | None = None


class WebhookConfig(_Strict):
    """`url`, or `url_file` naming a file that holds it: a Slack incoming-webhook URL is itself a credential.
    `timeout` bounds one delivery attempt from connect to the last byte of the answer (a total deadline, not a
    per-read one: an endpoint that drips a byte at a time must not hold the sender); `max_attempts` counts the
    attempts, with backoff between them, before the notification is given up as undelivered."""

    url: Url | None = None
    url_file: str | None = None
    timeout: PositiveDuration = 5.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10

    @model_validator(mode="after")
    def _one_source(self) -> WebhookConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        return self


class NotificationsConfig(_Strict):
    stdout: bool = True
    webhooks: list[WebhookConfig] = []
    pre_failover: list[str] = []  # commands; a non-zero exit aborts the failover
    post_failover: list[str] = []


class DaemonConfig(_Strict):
    listen: ListenAddress = "127.0.0.1:9464"  # read-only /metrics, /healthz, /status
    listen_public: bool = False  # listen on a non-loopback address: an explicit choice, never a default
    cycle_interval: PositiveDuration | None = None  # default: probes.interval
    lease_ttl: PositiveDuration = 10.0  # at least 3 cycles and 2s: a leader renews several times per TTL
    max_clock_offset: PositiveDuration = 5.0  # a daemon whose clock is further off the others' refuses to lead
    observation_retention: PositiveDuration = 86400.0


class AuditConfig(_Strict):
    """Where the audit chain's head is copied outside the database, so that a rewritten chain can be told apart."""

    head_file: Annotated[str, Field(min_length=1)] | None = None  # a relative path is relative to this file


class FailoverConfig(_Strict):
    """The whole file. Unknown keys are errors, so a typo never silently keeps a default."""

    version: Literal[1]
    display_timezone: str = "UTC"
    store: StoreUrl = "sqlite:///failover-state.db"
    require_multi_cloud: bool = True
    control_token_file: str | None = None
    sites: Annotated[dict[Name, SiteConfig], Field(min_length=1)]
    probes: ProbesConfig = ProbesConfig()
    policy: PolicyConfig = PolicyConfig()
    protection_window: ProtectionConfig = ProtectionConfig()
    engines: Annotated[dict[Name, EngineConfig], Field(min_length=1)]
    notifications: NotificationsConfig = NotificationsConfig()
    daemon: DaemonConfig = DaemonConfig()
    audit: AuditConfig = AuditConfig()


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


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str


def resolve_config_path(path: str | Path | None) -> Path:
    """`--config`, else `$FAILOVER_CONFIG`, else `./failover.yaml` (DESIGN §8)."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read, validate and convert; raises one ConfigError listing every problem, one line each."""
    file = resolve_config_path(path)
    text = read_text(file, what="config")
    data, lines = parse_yaml(file, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the file must be a mapping of settings (version, sites, engines, ...)")
    problems = list(_secrets(data, ()))
    config: FailoverConfig | None = None
    try:
        config = FailoverConfig.model_validate(data)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error))
    if config is not None:
        problems.extend(_cross_checks(config, _Comments(text.splitlines(), lines)))
    if problems:
        # every line is redacted: pydantic echoes the values it refuses, and a refused value may be a secret
        report = [redact(locate(file, lines, p.path, p.message)) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            report.append(f"{file}: and {len(problems) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(report))
    assert config is not None
    return LoadedConfig(file, config, to_topology(config))


def read_text(file: Path, *, what: str) -> str:
    """The file's text, refused before it is read whole when it could hurt the process: only a regular file of at
    most 1 MiB is read. The kind is checked with stat before opening (a FIFO would block the open, /dev/zero never
    ends) and again on the open descriptor (the path may have been replaced meanwhile); the read stops at the cap
    whatever the size said."""
    try:
        _check_kind(file, os.stat(file), what)
        descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb", buffering=0) as stream:
            _check_kind(file, os.fstat(stream.fileno()), what)
            raw = _read_capped(stream)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such {what} file") from None
    except OSError as error:
        raise ConfigError(f"{file}: cannot read: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_CONFIG_BYTES} bytes (1 MiB); a {what} file is a few KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None


def _read_capped(stream: BinaryIO) -> bytes:
    """Up to one byte past the cap, in small reads: a file that grew after stat (or a /proc file that says 0
    bytes) is still cut at the cap, and a small file costs a small buffer."""
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_CONFIG_BYTES:
        chunk = stream.read(min(1 << 16, MAX_CONFIG_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_kind(file: Path, info: os.stat_result, what: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{file}: is a directory, expected a {what} file")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        raise ConfigError(f"{file}: is {kind}, expected a regular {what} file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{file}: {info.st_size} bytes, larger than {MAX_CONFIG_BYTES} (1 MiB); a {what} file is a few KiB"
        )


class _Loader(_BASE_LOADER):  # type: ignore[misc]
    """Safe loading whose value errors (a 13th month, a year 0) become YAML errors located at their node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            raise yaml.constructor.ConstructorError(None, None, f"invalid value: {error}", node.start_mark) from None


def parse_yaml(file: Path, text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The data and a map from each field path to its 1-based line; duplicate keys are errors. The events are
    screened first (`_screen`), so that nothing deep or explosive ever reaches the composer."""
    if not text.strip():
        raise ConfigError(f"{file}:1: the file is empty")
    try:
        _screen(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except _Refused as refused:
        raise ConfigError(f"{file}:{refused.line}: {refused.message}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}{line}: invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: invalid YAML: {error}") from None
    lines: dict[tuple[str | int, ...], int] = {}
    duplicates: list[str] = []
    if node is not None:
        _index(node, (), lines, duplicates)
    if duplicates:
        raise ConfigError("\n".join(f"{file}:{d}" for d in duplicates))
    return data, lines


class _Refused(Exception):
    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1 if event.start_mark else 1
        self.message = message


@dataclass
class _Open:
    """A collection being read: its anchor, its size once aliases are expanded, and its height so far."""

    anchor: str | None
    size: int = 1
    height: int = 1


def _screen(text: str) -> None:
    """Walk the YAML events once, keeping only one entry per open collection, and refuse what would exhaust the
    stack or the memory later: nesting deeper than MAX_DEPTH (the composer recurses), more than MAX_ALIASES
    aliases, more than MAX_NODES values once aliases are expanded (a billion laughs is 9 aliases deep, 10^9 values,
    in a few hundred bytes), an alias inside the collection it names (infinite), a number too long to convert."""
    stack: list[_Open] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, height)
    total = aliases = 0
    for event in yaml.parse(text, Loader=_BASE_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise _Refused(event, f"YAML nested deeper than {MAX_DEPTH} levels; a configuration needs about 5")
            stack.append(_Open(event.anchor))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            _close(stack, anchors, done.anchor, done.size, done.height)
        elif isinstance(event, yaml.ScalarEvent):
            _check_number(event)
            total += 1
            _close(stack, anchors, event.anchor, 1, 0)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _Refused(event, f"more than {MAX_ALIASES} YAML aliases; a configuration needs few if any")
            if any(open_.anchor == event.anchor for open_ in stack):
                raise _Refused(event, f"YAML alias *{event.anchor} lies inside the collection it names (endless)")
            size, height = anchors.get(str(event.anchor), (1, 0))  # an undefined one: the composer says so
            if len(stack) + height > MAX_DEPTH:
                raise _Refused(event, f"YAML alias *{event.anchor} nests values deeper than {MAX_DEPTH} levels")
            total += size
            _close(stack, anchors, None, size, height)
        if total > MAX_NODES:
            raise _Refused(
                event, f"more than {MAX_NODES} values, each alias counted as the values it repeats; a configuration "
                "has a few hundred"
            )


def _close(stack: list[_Open], anchors: dict[str, tuple[int, int]], anchor: str | None, size: int, height: int) -> None:
    """A value is complete: remember its anchor's expansion and count it in the collection that holds it."""
    if anchor is not None:
        anchors[anchor] = (size, height)
    if stack:
        stack[-1].size += size
        stack[-1].height = max(stack[-1].height, height + 1)


_RESOLVER = yaml.resolver.Resolver()
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


def _check_number(event: yaml.ScalarEvent) -> None:
    """Python refuses to convert an integer of more than 4,300 digits (a ValueError, not a YAML error)."""
    if len(event.value) <= MAX_NUMBER_CHARS:
        return
    tag = event.tag
    if tag in (None, "!"):
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    if tag in _NUMBER_TAGS:
        raise _Refused(event, f"a number of {len(event.value)} characters; no setting needs over {MAX_NUMBER_CHARS}")


def _index(
    node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], duplicates: list[str]
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = _key(key_node)
            if key in seen:
                dotted = ".".join(map(str, (*path, key)))
                duplicates.append(f"{key_node.start_mark.line + 1}: {dotted}: duplicate key")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            if key is None:
                lines[(*path, "None")] = key_node.start_mark.line + 1  # how pydantic's error locations name it
            _index(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, (*path, position), lines, duplicates)


_KEYS = yaml.constructor.SafeConstructor()


def _key(node: yaml.Node) -> Any:
    """A mapping key as the loaded data holds it (`42:` is the int 42), so that its line can be found by path."""
    if isinstance(node, yaml.ScalarNode):
        try:
            return _KEYS.construct_object(node)
        except (yaml.YAMLError, ValueError):
            pass
    return str(node.value)


def _is_named_map(path: tuple[str | int, ...]) -> bool:
    """Maps whose keys are names the user chose (sites, engines, replicas), not settings."""
    return path in (("sites",), ("engines",)) or (len(path) == 3 and path[0] == "engines" and path[2] == "replicas")


def _secrets(data: Any, path: tuple[str | int, ...]) -> Iterator[Problem]:
    """Secrets found by key name (`password:`) and by value (an AWS key id, a password or token in any URL, an
    inline chat webhook URL), anywhere in the file: a command in `pre_failover` leaks as well as a URL field."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and not _is_named_map(path) and SECRET_KEY.search(key):
                yield Problem((*path, key), f"secrets do not belong in the configuration; {_CHAIN}")
            else:
                yield from _secrets(value, (*path, key))
    elif isinstance(data, list):
        for position, item in enumerate(data):
            yield from _secrets(item, (*path, position))
    elif isinstance(data, str):
        found = find_secret(data)
        if found:
            yield Problem(path, f"{found} in the configuration; {_advice(path)} (got {_clip(redact(data))!r})")


_CHAIN = (
    "use the provider's standard credential chain (AWS profile or environment, Google ADC, Azure "
    "DefaultAzureCredential) or a *_file key (url_file, control_token_file)"
)


def _advice(path: tuple[str | int, ...]) -> str:
    """Where this secret belongs instead, by where it was found."""
    if "webhooks" in path:
        return "a webhook URL is a credential: put it in a file and name the file with url_file"
    if path and path[-1] == "control_url":
        return "the engines' bearer token belongs in the file named by control_token_file (or FAILOVER_CONTROL_TOKEN)"
    if path == ("store",):
        return "the store URL takes no credentials"
    return _CHAIN


AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`()]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s:]*):([^/?#@\s]+)@")
_CHAT_WEBHOOK = re.compile(
    r"^(https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)|[^/?#]*\.webhook\.office\.com"
    r"|outlook\.office(?:365)?\.com/webhook|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks))/",
    re.IGNORECASE,
)
_SECRET_PARAM = re.compile(r"(?:^|[_.-])(token|key|sig|signature|code|secret|password|passwd|credential)$", re.I)
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def find_secret(text: str) -> str | None:
    """What kind of secret `text` holds, or None. Never returns the secret itself."""
    if AWS_KEY_ID.search(text):
        return "an AWS access key id"
    for url in _URL.findall(text):
        if _CHAT_WEBHOOK.match(url):
            return "an inline chat webhook URL (Slack, Teams or Discord)"
        if _USERINFO.match(url):
            return "a password in a URL (user:password@)"
        secret_names = [name for name, _ in _query_pairs(url) if _SECRET_PARAM.search(name)]
        if secret_names:
            return f"a secret in the URL's {secret_names[0]}= parameter"
    if _BEARER.search(text):
        return "a bearer token"
    return None


def _query_pairs(url: str) -> list[tuple[str, str]]:
    query = url.partition("?")[2].partition("#")[0]
    return [(name, value) for name, eq, value in (pair.partition("=") for pair in query.split("&")) if eq and value]


def redact(text: str) -> str:
    """`text` with every secret `find_secret` knows replaced by `***`: what an error line may show of a value."""
    text = AWS_KEY_ID.sub(lambda match: match.group(1) + "*" * 16, text)
    text = _BEARER.sub(lambda match: match.group(1) + " ***", text)
    return _URL.sub(lambda match: _redact_url(match.group(0)), text)


def _redact_url(url: str) -> str:
    chat = _CHAT_WEBHOOK.match(url)
    if chat:
        return chat.group(1) + "/***"
    url = _USERINFO.sub(lambda match: f"{match.group(1)}{match.group(2)}:***@", url)
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hashmark, fragment = rest.partition("#")
    pairs = [
        f"{name}=***" if eq and _SECRET_PARAM.search(name) else name + eq + value
        for name, eq, value in (pair.partition("=") for pair in query.split("&"))
    ]
    return f"{base}?{'&'.join(pairs)}{hashmark}{fragment}"


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic_problems(error: ValidationError) -> Iterator[Problem]:
    for item in error.errors():
        path = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind = item["type"]
        if kind == "extra_forbidden":
            if any(SECRET_KEY.search(str(part)) for part in path):
                continue  # already reported as a secret, with better advice
            message = "unknown key" + _did_you_mean(path)
        elif kind == "string_pattern_mismatch":
            url = "url" in str(path[-1])
            message = "expected an http:// or https:// URL" if url else "expected a name of letters, digits, - _ ."
            message += f" (got {item['input']!r})"
        elif kind == "too_short" and path and path[-1] == "replicas":
            message = "an engine needs at least 2 replicas to fail over between"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else kind
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {item['input']!r})"
        yield Problem(path, message)


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at `path` (names in user-named maps are skipped)."""
    model: type[BaseModel] = FailoverConfig
    walked: tuple[str | int, ...] = ()
    for part in path:
        if _is_named_map(walked) or isinstance(part, int):
            walked += (part,)
            continue
        field_info = model.model_fields.get(str(part))
        if field_info is None:
            return None
        inner = _inner_model(field_info.annotation)
        if inner is None:
            return None
        model, walked = inner, (*walked, part)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _inner_model(origin) if origin is not None and origin is not annotation else None


def _did_you_mean(path: tuple[str | int, ...]) -> str:
    model = _model_at(path[:-1])
    if model is None:
        return ""
    fields = sorted(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(fields)})"


def _cross_checks(config: FailoverConfig, comments: _Comments) -> Iterator[Problem]:
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
    needs = {"gcp": ("project",), "azure": ("subscription", "resource_group")}
    for name, site in config.sites.items():
        for field_name in needs.get(site.provider, ()):
            if getattr(site, field_name) is None:
                yield Problem(("sites", name, field_name), f"required for provider {site.provider}")
    for position, vantage in enumerate(config.probes.vantage_points):
        if vantage != ORCHESTRATOR_VANTAGE and vantage not in config.sites:
            yield Problem(("probes", "vantage_points", position), f"unknown site {vantage!r}")
    providers = {site.provider for site in config.sites.values()}
    if config.require_multi_cloud and len(providers) < 2:
        yield Problem(
            ("sites",), f"require_multi_cloud is true but every site is on {', '.join(sorted(providers))}"
        )


def _quorum_checks(config: FailoverConfig, comments: _Comments) -> Iterator[Problem]:
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
class _Comments:
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


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` of an HTTP listener; port 0 lets the system choose (the tests' way). ValueError
    saying what is wrong and what is expected, for `daemon.listen` and `failover daemon --listen` alike."""
    return _host_port(text.strip(), min_port=0, default_port=None, example="127.0.0.1:9464")


def is_loopback(host: str) -> bool:
    """Only a loopback address keeps a listener off the network; any other name may resolve to anything."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def _host_port(text: str, *, min_port: int, default_port: int | None, example: str) -> tuple[str, int]:
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not _is_ip(host, 6) or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6 address]:port, e.g. [::1]:9464")
        port, has_port = rest[1:], bool(rest)
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    else:
        host, colon, port = text.partition(":")
        has_port = bool(colon)
        numeric = bool(re.fullmatch(r"[0-9.]+", host))
        if not _HOSTNAME.match(host) or (numeric and not _is_ip(host, 4)):
            raise ValueError(f"{text!r} is not host:port, e.g. {example}")
    if not has_port:
        if default_port is None:
            raise ValueError(f"{text!r} has no port; write host:port, e.g. {example}")
        return host, default_port
    if not _PORT.match(port) or not min_port <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from {min_port} to 65535")
    return host, int(port)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def store_url_problem(url: str) -> str | None:
    """What is wrong with a `store:` URL, or None: `sqlite:///path` or `etcd://host:port[,host:port...][/prefix]`,
    the two backends that exist; `mongodb://db:27017` and its like were "valid" until they were opened."""
    scheme, sep, rest = url.partition("://")
    usage = "write sqlite:///path/to/state.db or etcd://host:2379[,host:2379...][/prefix]"
    if not sep or scheme not in ("sqlite", "etcd"):
        return f"not a store URL ({scheme + '://' if sep else 'no scheme'}); {usage}"
    if "?" in rest or "#" in rest:
        return "options are not supported in store URLs"
    if "@" in rest:
        return "credentials are not supported in store URLs"
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        return None if path and not path.endswith("/") else f"names no database file; {usage}"
    members, slash, prefix = rest.partition("/")
    if slash and (not ("/" + prefix).rstrip("/") or "//" in "/" + prefix.rstrip("/")):
        return "the etcd key prefix must look like /name or /name/sub"
    seen: set[tuple[str, int]] = set()
    for member in members.split(","):
        try:
            endpoint = _host_port(member.strip(), min_port=1, default_port=2379, example="10.0.0.1:2379")
        except ValueError as error:
            return f"etcd member {error}" if member.strip() else "an empty etcd member between commas"
        if endpoint in seen:
            return f"etcd member {member.strip()!r} is named twice"
        seen.add(endpoint)
    return None


def locate(file: Path, lines: Mapping[tuple[str | int, ...], int], path: tuple[str | int, ...], message: str) -> str:
    """`FILE:LINE: field.path: message`, the line of the deepest part of `path` the YAML marks know."""
    line = None
    for cut in range(len(path), -1, -1):
        line = lines.get(path[:cut])
        if line is not None:
            break
    where = f"{file}:{line}" if line is not None else str(file)
    dotted = ".".join(map(str, path)) or "(top level)"
    return f"{where}: {dotted}: {message}"


def to_topology(config: FailoverConfig) -> Topology:
    """The core's immutable view of a validated configuration."""
    sites = {
        name: Site(
            name=name,
            provider=site.provider,
            region=site.region,
            zones=tuple(site.zones),
            endpoint_url=site.endpoint_url,
            profile=site.profile,
            project=site.project,
            subscription=site.subscription,
            resource_group=site.resource_group,
        )
        for name, site in config.sites.items()
    }
    engines = {name: _engine(name, engine) for name, engine in config.engines.items()}
    policy = config.policy
    return Topology(
        sites=sites,
        engines=engines,
        policy=Policy(
            failure_threshold=policy.failure_threshold,
            quorum=policy.quorum,
            flap_count=policy.flap_count,
            flap_window=policy.flap_window,
            max_lag_on_failover=policy.max_lag_on_failover,
            min_failover_interval=policy.min_failover_interval,
            approval=Approval(policy.approval),
            prefer_other_provider=policy.prefer_other_provider,
            step_deadline=policy.step_deadline,
            suspect_timeout=policy.suspect_timeout,
            quorum_may_count_cloud_apis=policy.quorum_may_count_cloud_apis,
        ),
        probes=ProbeSettings(
            interval=config.probes.interval,
            timeout=config.probes.timeout,
            vantage_points=tuple(config.probes.vantage_points),
            provider_interval=config.probes.provider_interval,
        ),
        protection=ProtectionSettings(
            duration=config.protection_window.duration, allow=tuple(config.protection_window.allow)
        ),
        display_timezone=config.display_timezone,
    )


def _engine(name: str, engine: EngineConfig) -> Engine:
    replicas = tuple(
        Replica(r_name, name, r.site, r.instance, r.control_url, priority)
        for priority, (r_name, r) in enumerate(engine.replicas.items())
    )
    dns = engine.dns
    target = DnsTarget(dns.provider, dns.zone_id, dns.record, dns.ttl, dns.endpoint_url) if dns else None
    return Engine(name, engine.primary, replicas, target)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, for editors (`failover config schema`)."""
    schema = FailoverConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "failover configuration"
    return schema

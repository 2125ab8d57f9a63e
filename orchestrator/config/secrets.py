"""Secrets in a configuration, found by key and by value, and redaction of any text an error line may show.

Credentials come from each cloud's standard chain, never from the file: a secret found here is refused, and the
refusal shows the value redacted so that the error itself never leaks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from orchestrator.config.problems import Problem, is_named_map

# Keys that hold credentials. Credentials come from each cloud's standard chain, never from this file.
SECRET_KEY = re.compile(
    r"(secret|password|passwd|private_key|access_key|api_key|token(?!_file)|credential|client_secret|sas_key|"
    r"connection_string)",
    re.IGNORECASE,
)


def secrets_in(data: Any, path: tuple[str | int, ...]) -> Iterator[Problem]:
    """Secrets found by key name (`password:`) and by value (an AWS key id, a password or token in any URL, an
    inline chat webhook URL), anywhere in the file: a command in `pre_failover` leaks as well as a URL field."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and not is_named_map(path) and SECRET_KEY.search(key):
                yield Problem((*path, key), f"secrets do not belong in the configuration; {_CHAIN}")
            else:
                yield from secrets_in(value, (*path, key))
    elif isinstance(data, list):
        for position, item in enumerate(data):
            yield from secrets_in(item, (*path, position))
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

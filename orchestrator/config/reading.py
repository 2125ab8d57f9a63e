"""Reading a configuration file safely: the file itself, then the YAML, screened before anything is built from it.

A hostile or mistaken file must not hurt the process (issue 12): only a regular file of at most 1 MiB is read, and
the YAML events are screened for depth, aliases and expanded size before the composer (which recurses) sees them.
The parse keeps each field's line, so that every later problem can be reported where it is.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from orchestrator.errors import ConfigError

# Limits that keep a hostile or mistaken file from hurting the process (issue 12): a real configuration is a few KiB,
# a few hundred values, about 5 levels deep, with no alias.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_ALIASES = 64
MAX_NODES = 50_000
MAX_NUMBER_CHARS = 64
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built: 10x faster


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

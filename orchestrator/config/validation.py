"""pydantic's validation errors as located problems, each in the words an SRE needs ("did you mean 'region'?").

The same translation serves the whole file (`FailoverConfig`) and an adapter's options (its own model, placed at the
site or DNS target that holds them), so that a typo in `project:` reads like a typo in `region:`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.config.models import FailoverConfig
from orchestrator.config.problems import Problem, is_named_map
from orchestrator.config.secrets import SECRET_KEY

Path = tuple[str | int, ...]


def pydantic_problems(
    error: ValidationError,
    *,
    root: type[BaseModel] = FailoverConfig,
    at: Path = (),
    also: Collection[str] = (),
    owner: str = "",
) -> Iterator[Problem]:
    """`error` of validating `root` as problems. `at`: where `root`'s data sits in the file; `also`: keys valid
    beside `root`'s own at its top (a site's common keys beside its adapter's options), offered as corrections;
    `owner`: who requires a missing field ("provider gcp"), when it is not the file itself."""
    for item in error.errors():
        path = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind = item["type"]
        if kind == "extra_forbidden":
            if any(SECRET_KEY.search(str(part)) for part in (*at, *path)):
                continue  # already reported as a secret, with better advice
            message = "unknown key" + _did_you_mean(path, root, at, also if len(path) == 1 else ())
        elif kind == "string_pattern_mismatch":
            url = "url" in str(path[-1])
            message = "expected an http:// or https:// URL" if url else "expected a name of letters, digits, - _ ."
            message += f" (got {item['input']!r})"
        elif kind == "too_short" and path and path[-1] == "replicas":
            message = "an engine needs at least 2 replicas to fail over between"
        elif kind == "missing":
            message = "required field is missing" + (f" for {owner}" if owner else "")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else kind
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {item['input']!r})"
        yield Problem((*at, *path), message)


def _model_at(path: Path, root: type[BaseModel], at: Path) -> type[BaseModel] | None:
    """The model class whose fields live at `path` below `root` (names in user-named maps are skipped)."""
    model: type[BaseModel] = root
    walked: Path = at
    for part in path:
        if is_named_map(walked) or isinstance(part, int):
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


def _did_you_mean(path: Path, root: type[BaseModel], at: Path, also: Collection[str]) -> str:
    model = _model_at(path[:-1], root, at)
    if model is None:
        return ""
    fields = sorted({*model.model_fields, *also})
    close = difflib.get_close_matches(str(path[-1]), fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(fields)})"

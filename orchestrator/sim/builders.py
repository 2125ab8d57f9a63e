"""Fast constructors for the core's frozen dataclasses that the simulator makes by the million.

Why: a frozen dataclass's `__init__` sets each field through `object.__setattr__` (its own `__setattr__` refuses),
which makes an `Observation` cost about as much as the rest of a probe. Every simulated probe round makes one per
replica and site per vantage point, and a status per replica that answered. `builder(cls)` returns a function that
makes the same object (equal, same type, every field set, defaults included) by setting each slot through its
descriptor, at about a third of the cost. Only for frozen, slotted dataclasses without `__post_init__` (checked
when the builder is made, so a change in the core fails loudly here rather than building something subtly
different); tests/sim/test_sim_builders.py compares what it builds with what the class builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """A function with `cls`'s signature (positional or keyword) that builds `cls` objects through their slots."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in vars(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: builder() needs a slotted dataclass without __post_init__")
    fields = dataclasses.fields(cls)
    if any(f.default_factory is not dataclasses.MISSING for f in fields):
        raise TypeError(f"{cls.__name__}: builder() does not build default factories")
    names = [f.name for f in fields]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    parameters = []
    for f in fields:
        namespace[f"_set_{f.name}"] = vars(cls)[f.name].__set__
        if f.default is dataclasses.MISSING:
            parameters.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    _set_{name}(made, {name})\n" for name in names)
    source = f"def build({', '.join(parameters)}):\n    made = _new(_cls)\n{body}    return made\n"
    exec(source, namespace)  # the way dataclasses itself writes __init__
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"builder({cls.__name__})"
    return build

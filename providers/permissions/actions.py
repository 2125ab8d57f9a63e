"""Azure RBAC action matching, as Azure evaluates a role's `Actions` and `NotActions` (no SDK, no IO).

An action is allowed when some `Actions` pattern matches it and no `NotActions` pattern does; `*` matches any run of
characters, and matching is case-insensitive (`Microsoft.Compute/virtualMachines/*` allows
`microsoft.compute/virtualmachines/start/action`). Shared by the permission dry run (providers/permissions/azure.py)
and the fakes that enforce a role file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=512)
def _pattern(action: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in action.split("*")) + "$", re.IGNORECASE)


def allows(actions: Iterable[str], not_actions: Iterable[str], wanted: str) -> bool:
    """Whether a permission set (`actions` minus `not_actions`) allows the action `wanted`."""
    return (any(_pattern(a).match(wanted) for a in actions)
            and not any(_pattern(a).match(wanted) for a in not_actions))

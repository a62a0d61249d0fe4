"""The one rule for names that become parts of store keys, Redis keys and file names:
datasets, storage locations, hosts, services (``NAME``) and key categories (``CATEGORY``).

The stores apply it when they build a key (``backup_format.layout``) and ``drfleet plan
check`` applies it to the plan, so a name such as ``../../../outside/x`` is refused where
it is written, with its place in the plan, not at the first backup.
"""

from __future__ import annotations

import re

NAME_MAX_LEN = 128
CATEGORY_MAX_LEN = 64

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")

NAME_RULE = "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
CATEGORY_RULE = "lowercase letters, digits, '_' or '-', starting with a letter or digit"


def name_problem(value: object, *, category: bool = False, max_len: int | None = None) -> str | None:
    """Why ``value`` is not an allowed name (a category name when ``category``; at most
    ``max_len`` characters when given), or None. The reason never repeats the value."""
    default_len, pattern, rule = ((CATEGORY_MAX_LEN, _CATEGORY, CATEGORY_RULE) if category
                                  else (NAME_MAX_LEN, _NAME, NAME_RULE))
    max_len = max_len or default_len
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"longer than {max_len} characters"
    if not pattern.match(value):
        return f"must be {rule}"
    return None

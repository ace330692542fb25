"""Writing a few keys of the shared view state without overwriting the others."""

from __future__ import annotations

from typing import Any

from dash import Patch, no_update

#: Values the comparison's controls show when the state says nothing: written as "nothing" (None),
#: so a control echoing its default into the state on page load changes no key (no callback
#: cascade, no default in the URL).
DEFAULTS = {"ctab": "behaviours", "rows": "classes", "metric": "correct", "rel": "abs",
            "lshow": "weights", "lview": "tree", "open": []}


def patch_changes(old: dict[str, Any], new: dict[str, Any]) -> Any:
    """A Patch setting only the keys whose values differ between ``old`` and ``new``.

    Several views write the one shared state; a callback that returned its whole
    (possibly stale) copy could undo another view's write that landed meanwhile, e.g. a
    selection made while the comparison recomputed its base. A Patch is applied to the
    browser's current value, so only the keys this view owns change. A missing key and
    ``None`` are the same, and a control's default (:data:`DEFAULTS`) is ``None``; when no key
    changes the result is ``no_update``: an empty Patch would still count as a change of the
    state and set off every callback that reads it.
    """
    patch = Patch()
    changed = False
    for key, value in new.items():
        value = _plain(key, value)
        if _plain(key, old.get(key)) != value:
            patch[key] = value
            changed = True
    for key in old.keys() - new.keys():
        if old[key] is not None:
            del patch[key]
            changed = True
    return patch if changed else no_update


def _plain(key: str, value: Any) -> Any:
    return None if key in DEFAULTS and value == DEFAULTS[key] else value

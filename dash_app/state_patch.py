"""Writing a few keys of the shared view state without overwriting the others."""

from __future__ import annotations

from typing import Any

from dash import Patch


def patch_changes(old: dict[str, Any], new: dict[str, Any]) -> Patch:
    """A Patch setting only the keys whose values differ between ``old`` and ``new``.

    Several views write the one shared state; a callback that returned its whole
    (possibly stale) copy could undo another view's write that landed meanwhile, e.g. a
    selection made while the comparison recomputed its base. A Patch is applied to the
    browser's current value, so only the keys this view owns change.
    """
    patch = Patch()
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    for key in old.keys() - new.keys():
        del patch[key]
    return patch

"""A native ``<select>`` as a Dash component (``assets/select.js``), for the metric pickers.

Each ``dcc.Dropdown`` is a searchable menu of several React components. Measured on a bare Dash
page (52 markers, headless Chromium, 12 alternating loads): nine dropdowns added 41 ms to the
first drawing and 2.3 MB of JS heap. The overview's metric pickers (colour, size, the
scatterplot's axes, What-if's two metrics, Filters' "add a histogram") list a few metric names
and need no search: they are native selects, which the browser draws, keyboard and type-ahead
included. The experiment picker and the model search keep their dropdowns (search).

``value`` is an option's value or None; ``placeholder`` is shown as a first, empty option while
nothing is chosen (and stays choosable when ``clearable``). Option labels are text, never markup.
"""

from __future__ import annotations

from typing import Any, ClassVar

from dash.development.base_component import Component

PROPS = ["id", "options", "value", "placeholder", "clearable", "className", "style", "title"]


class Select(Component):
    """``Select(id, options=[{"label", "value"}], value=None, placeholder=None, clearable=False)``."""

    _children_props: ClassVar[list[str]] = []
    _base_nodes: ClassVar[list[str]] = ["children"]
    _namespace = "cc_components"
    _type = "Select"

    def __init__(self, id: str, options: list[dict[str, Any]] | None = None, value: Any = None,
                 placeholder: str | None = None, clearable: bool = False, **kwargs: Any) -> None:
        self._prop_names = list(PROPS)
        self._valid_wildcard_attributes = ["aria-"]
        self.available_properties = list(PROPS)
        self.available_wildcard_properties = ["aria-"]
        super().__init__(id=id, options=options or [], value=value, placeholder=placeholder,
                         clearable=clearable, **kwargs)

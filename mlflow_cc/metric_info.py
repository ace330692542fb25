"""Per-experiment metric metadata: direction, unit, display format, primary flag."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlflow_cc import contract

#: The default display format, used in place of an invalid one.
DEFAULT_FORMAT = ".4g"
#: Longest unit kept (units are short: "ms", "MB", "tokens/s").
MAX_UNIT = 40
#: The formats the app accepts: "bytes", or a numeric Python format spec that d3 (Plotly's
#: axis and hover formats) reads the same way: [sign][#][0][width][,][.precision][type].
#: No fill or alignment characters and no braces, so a format can never carry markup or a
#: Plotly ``%{...}`` template into a figure.
_FORMAT_SPEC = re.compile(r"[+\- ]?#?0?[0-9]{0,2},?(?:\.[0-9]{1,2})?[eEfFgGd%]?")


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is read: ``direction`` is "max" (higher is better) or "min"."""

    name: str
    direction: str = "max"
    unit: str = ""
    format: str = DEFAULT_FORMAT
    primary: bool = False

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "max"

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("name")
        return json.dumps(d, sort_keys=True)

    def format_value(self, value: float | None) -> str:
        """Format ``value`` for display with this metric's format and unit."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if self.format == "bytes":
            return format_bytes(value)
        try:
            if self.format.endswith("d"):
                text = format(round(value), self.format)
            else:
                text = format(value, self.format)
        except (ValueError, TypeError):
            text = f"{value:.4g}"
        return f"{text} {self.unit}".strip() if self.unit and not self.format.endswith("%") else text


def format_bytes(value: float) -> str:
    """Bytes as B/KB/MB/GB (powers of 1,000, as file sizes are usually quoted)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000.0
    return f"{value:.2f} GB"  # pragma: no cover - loop always returns


def format_problem(spec: object) -> str | None:
    """Why ``spec`` is not a usable display format (None when it is)."""
    if spec == "bytes":
        return None
    if not isinstance(spec, str) or not spec or not _FORMAT_SPEC.fullmatch(spec):
        return (f"format {str(spec)[:40]!r} is not a number format spec such as '.1%', '.3f', ',d' "
                f"or 'bytes'")
    try:
        format(1 if spec.endswith("d") else 0.5, spec)
    except (ValueError, TypeError) as exc:
        return f"format {spec!r} is not a valid format spec ({exc})"
    return None


def clean_unit(unit: object) -> str:
    """A unit as plain text: control characters dropped, at most :data:`MAX_UNIT` characters."""
    return "".join(ch for ch in str(unit) if ch.isprintable())[:MAX_UNIT]


def validate(name: str, direction: str, primary: bool) -> None:
    if direction not in ("max", "min"):
        raise ValueError(f"metric {name!r}: direction must be 'max' or 'min', not {direction!r}")
    if not isinstance(primary, bool):
        raise TypeError(f"metric {name!r}: primary must be True or False")


def parse_experiment_tags(tags: Mapping[str, str]) -> tuple[dict[str, MetricInfo], list[str]]:
    """Read metric metadata from experiment tags; returns (infos, problems)."""
    infos: dict[str, MetricInfo] = {
        name: MetricInfo(name=name, **meta)  # type: ignore[arg-type]
        for name, meta in contract.BUILTIN_METRICS.items()
    }
    problems: list[str] = []
    for key, value in tags.items():
        if not key.startswith(contract.EXP_TAG_METRIC_PREFIX):
            continue
        name = key[len(contract.EXP_TAG_METRIC_PREFIX) :]
        try:
            raw: Any = json.loads(value)
            fmt = raw.get("format", DEFAULT_FORMAT)
            bad_format = format_problem(fmt)
            info = MetricInfo(
                name=name,
                direction=str(raw.get("direction", "max")),
                unit=clean_unit(raw.get("unit", "")),
                format=DEFAULT_FORMAT if bad_format else str(fmt),
                primary=bool(raw.get("primary", False)),
            )
            validate(name, info.direction, info.primary)
        except (ValueError, AttributeError, TypeError) as exc:
            problems.append(f"metric metadata for {name!r} is unreadable ({exc}); using defaults")
            continue
        if bad_format:
            problems.append(f"metric {name!r}: {bad_format}; using {DEFAULT_FORMAT!r}")
        infos[name] = info
    return infos, problems


def info_for(infos: Mapping[str, MetricInfo], name: str) -> MetricInfo:
    """Metadata of ``name``, or the default (higher is better) when none was recorded."""
    return infos.get(name) or MetricInfo(name=name)

"""What a metric is: its unit, which direction is bad, what it measures (each metric module's `INFO`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MetricInfo:
    unit: str
    bad: str | None  # "low" | "high" | None
    description: str

    def to_dict(self) -> dict:
        return asdict(self)

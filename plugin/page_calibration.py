"""The law page's calibration section: how well each version predicted the runs that landed after it (its track
record, read from the runs' ``forecast.*`` metrics) and the shown version's leave-one-out figure, with a
predicted-vs-observed chart (``registry/fit/_svg_forecast.py``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypedDict

from transfer_laws.registry.fit import Calibration as Scores
from transfer_laws.registry.fit import TrackRecord, calibration
from transfer_laws.registry.fit.charts import forecast_chart
from transfer_laws.registry.forecast import track_record
from transfer_laws.registry.law_card import calibration_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from transfer_laws.registry.fit import TransferLaw

log = logging.getLogger(__name__)


class TrackRecordSummary(TypedDict):
    """The law's track record without its per-run lists: each version's calibration, and all of them pooled."""

    versions: dict[str, dict[str, object]]
    pooled: Scores


class Calibration(TypedDict):
    """What the template shows: (version, calibration line) per version, the pooled and leave-one-out lines, the
    two charts (SVG, or "" without a forecast to draw) and the summary ``/api/laws`` gives."""

    versions: list[tuple[str, str]]
    pooled: str
    loo: str
    plot: str
    loo_plot: str
    record: TrackRecordSummary


class CalibrationSection(TypedDict):
    calibration: Calibration


def calibration_section(client: MlflowClient, law: str, fit: TransferLaw | None,
                        version: str | None) -> CalibrationSection:
    """``calibration``: {versions: [(version, line)], pooled, loo (line), plot (SVG or "")} for the template."""
    try:
        record = track_record(client, law)
    except Exception:  # the page still shows the law when the runs cannot be searched
        log.warning("could not read the track record of %s", law, exc_info=True)
        record = TrackRecord(versions={}, pooled=calibration([]))
    loo = ((getattr(fit, "checks", {}) or {}).get("loo") or {}) if fit is not None else {}
    rows = [r for rec in record["versions"].values() for r in rec.get("runs", [])]
    plot = forecast_chart(rows, f"{law}: each run forecast by the version before it") or ""
    loo_plot = forecast_chart(loo.get("runs") or [], f"{law} v{version}: leave-one-out") or ""
    return {"calibration": {
        "versions": [(v, calibration_line(rec)) for v, rec in record["versions"].items()],
        "pooled": calibration_line(record["pooled"]) if record["pooled"].get("n") else "",
        "loo": calibration_line(loo) if loo else "", "plot": plot, "loo_plot": loo_plot,
        "record": {"versions": {v: {k: x for k, x in r.items() if k != "runs"} for v, r in
                                record["versions"].items()}, "pooled": record["pooled"]},
    }}

"""``transfer-laws report``: a law version's plots (PNG, for print) and a self-contained HTML page that explains the
law, shows its checks and warnings and lists its runs, in a folder. ``--target python``: the transfer map of every
law of that target instead (the sources side by side, their D_T lines at one N, crossings and the ranking, as on
the law page), printed and written as ``map.json`` and SVG charts."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from transfer_laws.lightning_modules.config import positive
from transfer_laws.registry.forecast import track_record
from transfer_laws.registry.law_card import calibration_line
from transfer_laws.registry.schema import LAW_ALIAS
from transfer_laws.registry.tracking import active_client, home_dir, use_tracking_uri
from transfer_laws.scripts._jsonout import json_document
from transfer_laws.scripts._law import load_law_version
from transfer_laws.scripts._map_text import format_map, format_ranking
from transfer_laws.scripts.choose import load_map

if TYPE_CHECKING:
    from transfer_laws.registry.fit import TransferLaw


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws report``."""

    law: str = "text-to-python"
    """The law, <source>-to-<target>."""
    target: str | None = None
    """Report every law of this target side by side instead of one law (the transfer map)."""
    n: float | None = positive(None)
    """With --target: the N of the map's D_T lines and ranking (default: the largest N every law was fitted at)."""
    d_f: float | None = positive(None)
    """With --target: the D_F of the ranking (default: the smallest D_F every law was fitted at)."""
    unit: Literal["tokens", "chars"] = "tokens"
    """With --target: the unit of D_F and D_T (characters: the paper's unit, needed when tokenizers differ)."""
    version: str = LAW_ALIAS
    """Law version: an alias (latest) or a version number."""
    out: Path | None = None
    """Output folder (default: <TRANSFER_LAWS_HOME>/reports/<law>-v<version>)."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def _calibration_plots(law_name: str, version: str, law: TransferLaw, out: Path) -> list[Path]:
    """Predicted-vs-observed charts: the runs that landed after this version (its forecasts, read from the store)
    and its leave-one-out predictions; prints each one's calibration line."""

    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import VersionRecord, calibration
    from transfer_laws.registry.fit.charts import forecast_chart

    record = (track_record(active_client(), law_name)["versions"].get(version)
              or VersionRecord(**calibration([]), runs=[]))
    loo = (getattr(law, "checks", {}) or {}).get("loo") or {"n": 0, "runs": []}
    written = []
    for name, rec, what in (("forecasts.svg", record, f"runs that landed after version {version}, forecast by it"),
                            ("leave_one_out.svg", loo, "leave-one-out, each run predicted without it")):
        print(f"{what}: {calibration_line(rec)}")
        svg = forecast_chart(rec["runs"], f"{law_name} v{version}: {what}", standalone=True)
        if svg:
            (out / name).write_text(svg)
            written.append(out / name)
    return written


def run(args: Args) -> int:
    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit import plot_law

    if args.target is not None:
        return _target_report(args, args.target)
    use_tracking_uri(args.tracking_uri, read_only=True)
    with tempfile.TemporaryDirectory(prefix="transfer-law-report-") as tmp:
        folder = Path(tmp) / "fit"
        law, mv, _ = load_law_version(args.law, args.version, keep_in=folder)
        out = args.out or home_dir() / "reports" / f"{args.law}-v{mv.version}"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, out / "fit", dirs_exist_ok=True)
    written = plot_law(law, out, title=f"Transfer law {args.law}, version {mv.version}")
    (out / "summary.txt").write_text(law.summary() + "\n")
    print(law.summary())
    written += _calibration_plots(args.law, str(mv.version), law, out)
    print(f"\nwrote {len(written)} files to {out}:")
    for path in written:
        print(f"  {path}")
    return 0


def _target_report(args: Args, target: str) -> int:
    """The transfer map of ``target`` (``args.target``): printed, and written as map.json plus its charts."""
    # lazy: numpy and scipy (~1 s), not needed before this step
    from transfer_laws.registry.fit.charts import lines_chart, params_chart

    doc = load_map(target, args.n, args.d_f, args.unit, args.tracking_uri)
    out = args.out or home_dir() / "reports" / f"map-{target}"
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(format_map(doc) + (format_ranking(doc) if doc.get("ranking") else []))
    files = {"map.json": json_document(doc), "summary.txt": text + "\n",
             "d_t_by_source.svg": lines_chart(doc, standalone=True),
             "alpha_by_source.svg": params_chart(doc, "alpha", standalone=True),
             "beta_by_source.svg": params_chart(doc, "beta", standalone=True)}
    written = []
    for name, content in files.items():
        if content:
            (out / name).write_text(content)
            written.append(out / name)
    print(text)
    print(f"\nwrote {len(written)} files to {out}:")
    for path in written:
        print(f"  {path}")
    return 0

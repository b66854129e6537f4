"""``transfer-laws report``: a law version's plots (PNG, for print) and a self-contained HTML page that explains the
law, shows its checks and warnings and lists its runs, in a folder."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transfer_laws.registry.schema import LAW_ALIAS


@dataclass(kw_only=True)
class Args:
    """Arguments of ``transfer-laws report``."""

    law: str = "text-to-python"
    """The law, <source>-to-<target>."""
    version: str = LAW_ALIAS
    """Law version: an alias (latest) or a version number."""
    out: Path | None = None
    """Output folder (default: <TRANSFER_LAWS_HOME>/reports/<law>-v<version>)."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: MLFLOW_TRACKING_URI, else the embedded SQLite store under TRANSFER_LAWS_HOME."""


def run(args: Args) -> int:
    from transfer_laws.registry.fit import plot_law
    from transfer_laws.registry.tracking import home_dir, use_tracking_uri
    from transfer_laws.scripts._law import load_law_version

    use_tracking_uri(args.tracking_uri, read_only=True)
    with tempfile.TemporaryDirectory(prefix="transfer-law-report-") as tmp:
        law, mv, folder = load_law_version(args.law, args.version, keep_in=Path(tmp) / "fit")
        out = args.out or home_dir() / "reports" / f"{args.law}-v{mv.version}"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, out / "fit", dirs_exist_ok=True)
    written = plot_law(law, out, title=f"Transfer law {args.law}, version {mv.version}", kind="png")
    (out / "summary.txt").write_text(law.summary() + "\n")
    print(law.summary())
    print(f"\nwrote {len(written)} files to {out}:")
    for path in written:
        print(f"  {path}")
    return 0

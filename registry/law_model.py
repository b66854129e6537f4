"""The law as a pyfunc model, logged from code (no pickle): ``predict`` maps (N, D_F) to the transfer law's numbers.

The logged model is a two-line code file that builds ``LawModel`` plus the fit folder as its ``fit`` artifact;
loading it needs this package installed, nothing unpickled. ``N`` is the non-embedding parameter count and ``D_F``
the fine-tuning tokens, as in ``transfer_laws.registry.schema``.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd  # the predict type hint: MLflow reads it at log time (no signature inferred from it)
from mlflow.models import ModelSignature
from mlflow.pyfunc import (
    PythonModel,  # not mlflow.pyfunc.PythonModel: mypy reads mlflow.pyfunc as a LazyLoader
    PythonModelContext,
)
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from transfer_laws.registry.fit import TransferLaw
from transfer_laws.registry.law_card import (
    law_model_description,
    law_model_note,
    refit_run_note,
    version_description,
    version_tags,
)
from transfer_laws.registry.schema import LAW_FIT_ARTIFACT, MLFLOW_NOTE, law_model_name
from transfer_laws.registry.tracking import mark_registered

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.models.model import ModelInfo

    from transfer_laws.registry.reader import LawInputs

PREDICT_INPUTS = ("N", "D_F")
PREDICT_OUTPUTS = {
    "D_T": "d_t",
    "D_E": "d_e",
    "multiplier": "multiplier",
    "fraction": "fraction",
    "predicted_loss": "loss",
}
"""Output column -> field of the fitter's ``Prediction``; each also comes as ``<name>_low``/``<name>_high``: 95%
confidence intervals of the law (bootstrap) for D_T, D_E, multiplier and fraction, and for ``predicted_loss`` a 95%
*prediction* interval, where one run's best held-out loss falls (the law's uncertainty and the run-to-run noise)."""

_CODE = """\
# Built by transfer_laws.registry.law_model: the law model, loaded from code.
from mlflow.models import set_model

from transfer_laws.registry.law_model import LawModel

set_model(LawModel())
"""


class LawModel(PythonModel):
    """Serves a saved ``TransferLaw`` (the ``fit`` artifact)."""

    def load_context(self, context: PythonModelContext) -> None:
        self.law = TransferLaw.load(context.artifacts[LAW_FIT_ARTIFACT])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:  # Any: MLflow's signature, params unused
        """A table with columns N, D_F -> D_T, D_E, multiplier, fraction, predicted_loss and their intervals."""
        frame = pd.DataFrame(model_input)
        missing = [c for c in PREDICT_INPUTS if c not in frame.columns]
        if missing:
            raise ValueError(f"law model input needs columns {list(PREDICT_INPUTS)}; missing {missing}")
        try:  # integers or floats (the signature leaves the type to this check)
            n = frame["N"].to_numpy(dtype=float)
            d_f = frame["D_F"].to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise ValueError("law model input N and D_F must be numbers") from None
        if not (np.all(np.isfinite(n)) and np.all(n > 0) and np.all(np.isfinite(d_f)) and np.all(d_f > 0)):
            raise ValueError("law model input N and D_F must be positive finite numbers")
        prediction = self.law.predict(n, d_f)
        out = pd.DataFrame({"N": n, "D_F": d_f})
        for name, field in PREDICT_OUTPUTS.items():
            for suffix in ("", "_low", "_high"):
                out[name + suffix] = np.asarray(getattr(prediction, field + suffix), dtype=float)
        return out


def pip_requirements() -> list[str]:
    """What loading the law model needs: this package (it carries the fitter) and MLflow."""
    return [f"mlflow-transfer-laws=={installed_version('mlflow-transfer-laws')}",
            f"mlflow=={installed_version('mlflow')}"]


def signature() -> ModelSignature:
    """The declared signature: inputs N, D_F (numbers: MLflow refuses int64 for a ``double`` column, and counts are
    integers, so the inputs are ``any`` and ``predict`` checks them); outputs N, D_F and every prediction with its
    bounds (double; ``predicted_loss_low``/``_high``: a 95% prediction interval; the others 95% confidence
    intervals)."""
    outputs = [*PREDICT_INPUTS, *(name + suffix for name in PREDICT_OUTPUTS for suffix in ("", "_low", "_high"))]
    return ModelSignature(inputs=Schema([ColSpec(AnyType(), c) for c in PREDICT_INPUTS]),
                          outputs=Schema([ColSpec("double", c) for c in outputs]))


def log_law_model(fit_folder: Path, name: str = "law") -> ModelInfo:
    """Log the law model in the active run; returns MLflow's ``ModelInfo`` (``.model_uri`` is ``models:/m-...``).

    The signature is declared, so MLflow neither infers one (and warns that it failed) nor shows "Schema (0)"."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # An input example would make MLflow load and run the model at log time; the signature says it all.
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        code = Path(tmp) / "law_model_code.py"
        code.write_text(_CODE)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={LAW_FIT_ARTIFACT: str(fit_folder)},
            pip_requirements=pip_requirements(),
            signature=signature(),
        )


def annotate_version(client: MlflowClient, law: str, version: str, fit: TransferLaw, inputs: LawInputs | None = None, *,
                     model_id: str | None = None, run_id: str | None = None) -> None:
    """Give a new law version its description and k/alpha/beta tags, the law's registered model its description,
    and the version's logged model (``model_id``) and refit run (``run_id``) theirs (``registry.law_card``), so
    MLflow's pages show the law, its uncertainty, its warnings and where the fit lies."""
    name = law_model_name(law)
    try:
        client.update_model_version(name, version, description=version_description(law, fit, inputs))
        for key, value in version_tags(fit).items():
            client.set_model_version_tag(name, version, key, value)
        model_description = law_model_description(law)
        if (client.get_registered_model(name).description or "") != model_description:
            client.update_registered_model(name, description=model_description)
        if model_id:  # its page said "Not registered" on the embedded store
            mark_registered(client, model_id, name, version)
            client.set_logged_model_tags(model_id, {MLFLOW_NOTE: law_model_note(law, version, fit)})
        if run_id:
            client.set_tag(run_id, MLFLOW_NOTE, refit_run_note(law, version, fit))
    except Exception:  # the version is registered and complete; its card is a view of it, never a reason to fail
        logging.getLogger(__name__).warning("could not describe %s version %s", name, version, exc_info=True)

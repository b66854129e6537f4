"""How our experiments look in MLflow's UI: the "Model training" kind, a description, and a saved runs view.

MLflow 3.17 keeps an experiment's description in the tag ``mlflow.note.content``, its kind in
``mlflow.experimentKind`` and each saved runs-table view ("Views" on the Runs tab) in a tag
``mlflow.sharedViewState.<id>`` whose value is ``{"name", "createdAt", "updatedAt", "state"}`` with ``state`` the
JSON of the table's search facets and UI state (columns as ``params.`N```, ``metrics.`best_test_loss```...). We add
one view, so N, the data, the role and the best loss are one click away (or one link:
``#/experiments/<id>/runs?viewStateShareKey=transfer-laws-runs``). Pure data: no MLflow calls here.
"""

from __future__ import annotations

import json
import time

from transfer_laws.registry.schema import (
    EXPERIMENT_KIND_TRAINING,
    LAW_PAGE_PATH,
    METRIC_BEST_TEST_LOSS,
    METRIC_N,
    MLFLOW_EXPERIMENT_KIND,
    MLFLOW_NOTE,
    PARAM_D_F_TOKENS,
    PARAM_D_PRETRAIN_TOKENS,
    PARAM_D_TOKENS,
    REFIT_EXPERIMENT,
    TAG_LAW,
    TAG_PARENT,
    TAG_ROLE,
    ui_route,
)

SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
"""MLflow 3.17's experiment-tag prefix of a saved runs view (its UI constant ``sharedViewState``)."""
RUNS_VIEW_ID = "transfer-laws-runs"
RUNS_VIEW_NAME = "Transfer laws: N, D, role, best loss"
RUNS_VIEW_COLUMNS = (
    "attributes.`Dataset`",
    f"metrics.`{METRIC_N}`",
    f"params.`{PARAM_D_F_TOKENS}`",
    f"params.`{PARAM_D_TOKENS}`",
    f"params.`{PARAM_D_PRETRAIN_TOKENS}`",
    f"tags.`{TAG_ROLE}`",
    f"tags.`{TAG_LAW}`",
    f"metrics.`{METRIC_BEST_TEST_LOSS}`",
    f"tags.`{TAG_PARENT}`",
)


def runs_view_link(experiment_id: str) -> str:
    """Hash link (relative to the MLflow UI) that opens the runs table in our saved view."""
    return ui_route(f"#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_ID}")


def runs_view_tag(now_ms: int | None = None) -> tuple[str, str]:
    """(key, value) of the experiment tag that saves our runs view."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    state = {
        "searchFilter": "",
        "orderByKey": f"metrics.`{METRIC_N}`",  # a metric sorts as a number; the param N would sort as text
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": list(RUNS_VIEW_COLUMNS),
        "columnOrder": [],
        "columnWidths": {},
        "runsHiddenMode": "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "groupBy": None,
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
    }
    value = {"name": RUNS_VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    return SAVED_VIEW_PREFIX + RUNS_VIEW_ID, json.dumps(value)


def experiment_tags(name: str, experiment_id: str) -> dict[str, str]:
    """The "Model training" kind, a Markdown description and (for training experiments) the saved runs view."""
    page = f"The fitted laws, their plots and a refit button: [the law page]({LAW_PAGE_PATH})."
    if name == REFIT_EXPERIMENT:
        about = ("Refit runs of the scaling laws for transfer: one run per law version, holding the fit folder "
                 "(k, alpha, beta and their bootstrap draws), the plots, `inputs.json` (every run read, used or "
                 "excluded, and why) and the law as a pyfunc model. The versions themselves are in the model "
                 "registry as `transfer-law-<source>-to-<target>`.")
        return {MLFLOW_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING, MLFLOW_NOTE: f"{about}\n\n{page}"}
    about = ("Training runs for the scaling laws for transfer (Hernandez et al. 2021): `pretrain`, `scratch` and "
             "`finetune` runs. Each run records N (non-embedding parameters), its training data (`D_F_tokens` on "
             "fine-tunes, `D_tokens` on scratch runs, `D_pretrain_tokens` on pretraining), every setting "
             "(`optim.*`, `train.*`, `data.*`, `model.*` and the artifact `config.yaml`), its role "
             f"(`{TAG_ROLE}`), its law (`{TAG_LAW}`) and `{METRIC_BEST_TEST_LOSS}`.")
    view = (f"[Open the runs with N, D, role and best loss as columns]({runs_view_link(experiment_id)}) (the saved "
            f"view \"{RUNS_VIEW_NAME}\" under *Views*). One law's runs: search "
            f"``tags.`{TAG_LAW}` LIKE '%text-to-python%'``.")
    key, value = runs_view_tag()
    return {MLFLOW_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING, MLFLOW_NOTE: f"{about}\n\n{view}\n\n{page}", key: value}

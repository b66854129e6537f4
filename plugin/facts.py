"""RunFacts: what the launcher knows about a run before training starts, turned into schema tags."""

from __future__ import annotations

from dataclasses import dataclass, field

from transfer_laws.registry.schema import (
    ROLE_FINETUNE,
    ROLES,
    TAG_LAW,
    TAG_PARENT,
    TAG_PRETRAIN_RUN,
    TAG_ROLE,
    TAG_SOURCE,
    TAG_TARGET,
    law_name,
)


@dataclass(frozen=True)
class RunFacts:
    """The launcher's facts about one training run (the data-derived facts come from the DataModule)."""

    role: str
    """One of ``schema.ROLES``: pretrain, scratch or finetune."""
    source: str | None
    """Pretraining corpus name (pretrain and finetune runs), None for scratch runs."""
    target: str | None
    """Target corpus name (scratch and finetune runs), None for pretraining."""
    parent_uri: str | None = None
    """``models:/name/version`` of the registered checkpoint a fine-tune starts from."""
    parent_model_id: str | None = None
    """MLflow LoggedModel id (``m-...``) of that checkpoint, logged as the run's model input."""
    pretrain_run_id: str | None = None
    """Run id of the pretraining run behind the parent checkpoint."""
    extra_tags: dict[str, str] = field(default_factory=dict)
    """Further tags written with the schema tags (caller's names, e.g. a note)."""
    for_laws: bool = True
    """False for a run no law may read (a learning-rate tuning trial): no role or law tag, no checkpoint lineage."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"RunFacts.role must be one of {ROLES}, got {self.role!r}")
        if self.role == ROLE_FINETUNE:
            missing = [name for name in ("source", "target", "parent_uri") if not getattr(self, name)]
            if missing:
                raise ValueError(f"a finetune run needs {', '.join(missing)}")
        if self.parent_uri is not None and not self.parent_uri.startswith("models:/"):
            raise ValueError(f"RunFacts.parent_uri must be models:/name/version, got {self.parent_uri!r}")

    @property
    def law(self) -> str | None:
        """``<source>-to-<target>`` for a fine-tune, None otherwise."""
        if self.role != ROLE_FINETUNE or not self.source or not self.target:
            return None
        return law_name(self.source, self.target)

    def tags(self) -> dict[str, str]:
        """The run tags these facts set (absent facts set no tag)."""
        values = {
            TAG_ROLE: self.role,
            TAG_LAW: self.law,
            TAG_SOURCE: self.source,
            TAG_TARGET: self.target,
            TAG_PARENT: self.parent_uri,
            TAG_PRETRAIN_RUN: self.pretrain_run_id,
        }
        if not self.for_laws:
            values[TAG_ROLE] = values[TAG_LAW] = None
        tags = {key: str(value) for key, value in values.items() if value is not None}
        tags.update({str(k): str(v) for k, v in self.extra_tags.items()})
        return tags

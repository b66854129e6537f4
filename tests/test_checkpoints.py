"""Checkpoint registry: register a real checkpoint, load it back by alias and version, refuse bad input."""

from __future__ import annotations

import builtins
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from _plugin_data import CONFIG
from safetensors.torch import load_file

from transfer_laws.lightning_modules import GPT, CheckpointError, load_checkpoint, non_embedding_params, save_checkpoint
from transfer_laws.registry.checkpoints import (
    TokenizerMismatch,
    check_tokenizer,
    load_checkpoint_uri,
    register_checkpoint,
    register_run,
)
from transfer_laws.registry.schema import (
    CHECKPOINT_ARTIFACT,
    CKPT_TAG_CORPUS,
    CKPT_TAG_CORPUS_DIGEST,
    CKPT_TAG_FINETUNES,
    CKPT_TAG_LINEAGE,
    CKPT_TAG_N,
    CKPT_TAG_TOKENIZER_DIGEST,
    CKPT_TAG_TOKENS_SEEN,
    MLFLOW_MODEL_VERSIONS,
)
from transfer_laws.registry.tracking import ensure_experiment

EXTRA = {"tokens_seen": 12_345, "corpus": "stdlib", "corpus_digest": "c0ffee", "tokenizer_digest": "tok-1"}


def _checkpoint(folder: Path, run_id: str | None = None) -> Path:
    torch.manual_seed(0)
    save_checkpoint(GPT(CONFIG), folder, extra={**EXTRA, **({"run_id": run_id} if run_id else {})})
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "tokenizer.json").write_text('{"model": "bytes"}')
    return folder


def _run(uri: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(uri).create_run(ensure_experiment("ckpt", uri)).info.run_id


def _assert_registered_and_described(client: Any, registered: Any) -> None:
    """The LoggedModel names its registry version (its page must not say "Not registered"), exactly once, and the
    version says where its lineage lives."""
    model = client.get_logged_model(registered.model_id)
    linked = [(e["name"], str(e["version"])) for e in json.loads(model.tags[MLFLOW_MODEL_VERSIONS])]
    assert linked == [(registered.name, str(registered.version))]  # a server writes the version as a number
    assert f"lineage {registered.uri}" in model.tags["mlflow.note.content"]  # the model page's description
    mv = client.get_model_version(registered.name, str(registered.version))
    assert mv.tags[CKPT_TAG_FINETUNES] == "0"
    assert mv.tags[CKPT_TAG_LINEAGE] == f"tags.`transfer.parent` = '{registered.uri}'"
    assert mv.description.startswith(f"Pretrained checkpoint `{registered.uri}`: N = ")
    assert "0 run(s) started from this version" in mv.description
    assert "finetune --from" in client.get_registered_model(registered.name).description


def test_register_then_load_by_alias_gives_the_same_weights(sqlite_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_id = _run(sqlite_uri)
    folder = _checkpoint(tmp_path / "ckpt", run_id)
    registered = register_checkpoint(folder, name="pretrained-stdlib", run_id=run_id)
    assert (registered.version, registered.uri) == (1, "models:/pretrained-stdlib/1")

    loaded = load_checkpoint_uri("models:/pretrained-stdlib@champion", dst=tmp_path / "dl")
    assert (loaded.version, loaded.model_id, loaded.pretrain_run_id) == (1, registered.model_id, run_id)
    assert loaded.parent_uri == "models:/pretrained-stdlib/1" and loaded.tokenizer_digest == "tok-1"
    saved, got = load_file(folder / "model.safetensors"), load_file(loaded.folder / "model.safetensors")
    assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)
    assert (loaded.folder / "tokenizer" / "tokenizer.json").read_text() == '{"model": "bytes"}'

    mv = MlflowClient(sqlite_uri).get_model_version("pretrained-stdlib", "1")
    assert int(mv.tags[CKPT_TAG_N]) == non_embedding_params(CONFIG)
    assert (mv.tags[CKPT_TAG_TOKENS_SEEN], mv.tags[CKPT_TAG_CORPUS]) == ("12345", "stdlib")
    assert (mv.tags[CKPT_TAG_CORPUS_DIGEST], mv.tags[CKPT_TAG_TOKENIZER_DIGEST]) == ("c0ffee", "tok-1")
    _assert_registered_and_described(MlflowClient(sqlite_uri), registered)

    second = register_checkpoint(folder, name="pretrained-stdlib", run_id=run_id)
    assert second.version == 2
    assert load_checkpoint_uri("models:/pretrained-stdlib@champion").version == 2  # the alias moved
    assert load_checkpoint_uri("models:/pretrained-stdlib/1").version == 1


def test_missing_or_malformed_uri_is_a_clear_error(sqlite_uri: str) -> None:
    for uri in ("models:/nope@champion", "models:/nope/1", "runs:/abc/model", "models:/x"):
        with pytest.raises(CheckpointError, match="names no registered model version|not a checkpoint URI"):
            load_checkpoint_uri(uri)


def _stored_file(sqlite_uri: str, name: str, relative: str) -> Path:
    from mlflow import MlflowClient

    from transfer_laws.registry.tracking import model_id_of

    client = MlflowClient(sqlite_uri)
    model = client.get_logged_model(model_id_of(client.get_model_version(name, "1")))
    return Path(model.artifact_location.removeprefix("file://")) / relative


def test_damaged_stored_files_are_a_clear_error(sqlite_uri: str, tmp_path: Path) -> None:
    register_checkpoint(_checkpoint(tmp_path / "ckpt"), name="damaged")
    stored = _stored_file(sqlite_uri, "damaged", "model.safetensors")
    data = stored.read_bytes()
    damages = {
        "corrupted": (data[:-8] + bytes(8 * [0xFF]), "corrupted"),
        "truncated": (data[: len(data) // 2], "truncated or padded"),
        "padded": (data + bytes(8), "truncated or padded"),
        "missing": (None, "missing"),
    }
    for damage, (damaged, message) in damages.items():
        if damaged is None:
            stored.unlink()
        else:
            stored.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=f"file model.safetensors is {message}"):
            load_checkpoint_uri("models:/damaged@champion", dst=tmp_path / f"dl-{damage}")
    stored.write_bytes(data)
    stored.with_name("manifest.json").unlink()
    with pytest.raises(CheckpointError, match="has no manifest.json"):
        load_checkpoint_uri("models:/damaged@champion", dst=tmp_path / "dl-no-manifest")


def test_loading_reads_each_file_once_and_trains_what_it_checked(sqlite_uri: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json and model.safetensors are opened for reading once, by the check; the model is built from those
    bytes. After that first read the weights on disk are zeroed, so a second read by anyone (Python or safetensors'
    own file I/O) would fail the load or change the logits."""
    torch.manual_seed(0)
    saved = GPT(CONFIG).eval()
    register_checkpoint(save_checkpoint(saved, tmp_path / "ckpt", extra=EXTRA), name="once")
    dst = tmp_path / "dl"
    reads: Counter[str] = Counter()
    real_open = io.open

    def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        path = Path(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else None
        if path is None or dst not in path.parents or set(mode) & set("wax+"):
            return handle
        reads[path.name] += 1
        if path.name != "model.safetensors":
            return handle
        with handle:
            data = handle.read()
        path.write_bytes(bytes(len(data)))
        return io.BytesIO(data)

    with monkeypatch.context() as patched:
        patched.setattr(io, "open", counting_open)
        patched.setattr(builtins, "open", counting_open)
        loaded = load_checkpoint_uri("models:/once@champion", dst=dst)
    assert (reads["config.json"], reads["model.safetensors"]) == (1, 1)
    assert not any((loaded.folder / "model.safetensors").read_bytes())  # the zeroing happened: nothing read it later
    assert loaded.model.lm_head.weight is loaded.model.wte.weight
    x = torch.randint(0, CONFIG.vocab_size, (2, CONFIG.context_length))
    assert torch.equal(loaded.model.eval()(x)[0], saved(x)[0])


def test_bad_folders_register_nothing(sqlite_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    pickled = _checkpoint(tmp_path / "pickled")
    torch.save({"w": torch.zeros(1)}, pickled / "extra.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        register_checkpoint(pickled, name="bad")
    truncated = _checkpoint(tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        register_checkpoint(truncated, name="bad")
    assert MlflowClient(sqlite_uri).search_registered_models() == []


def test_check_tokenizer(sqlite_uri: str, tmp_path: Path) -> None:
    register_checkpoint(_checkpoint(tmp_path / "ckpt"), name="tok")
    loaded = load_checkpoint_uri("models:/tok/1")
    check_tokenizer(loaded, "tok-1")
    with pytest.raises(TokenizerMismatch, match="tokenizer mismatch.*tok-1.*tok-2"):
        check_tokenizer(loaded, "tok-2")


def test_register_run_finds_the_logged_checkpoint(sqlite_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_id = _run(sqlite_uri)
    folder = _checkpoint(tmp_path / "ckpt", run_id)
    MlflowClient(sqlite_uri).log_artifacts(run_id, str(folder), CHECKPOINT_ARTIFACT)
    registered = register_run(run_id, name="from-run")
    loaded = load_checkpoint_uri(registered.uri)
    assert loaded.pretrain_run_id == run_id
    model, extra = load_checkpoint(loaded.folder)
    assert extra["run_id"] == run_id and model.config == CONFIG
    with pytest.raises(CheckpointError, match="logged no 'checkpoint' artifacts"):
        register_run(_run(sqlite_uri), name="from-run")


@pytest.mark.server
def test_register_and_load_on_the_server_stack(server_stack: object, tmp_path: Path) -> None:
    uri = server_stack.tracking_uri
    run_id = _run(uri)
    registered = register_checkpoint(_checkpoint(tmp_path / "ckpt", run_id), name="pretrained-s3", run_id=run_id,
                                     tracking_uri=uri)
    keys = [o["Key"] for o in server_stack.s3_client().list_objects_v2(Bucket=server_stack.bucket)["Contents"]]
    assert any(registered.model_id in k and k.endswith("model.safetensors") for k in keys)
    loaded = load_checkpoint_uri("models:/pretrained-s3@champion", dst=tmp_path / "dl", tracking_uri=uri)
    assert loaded.model_id == registered.model_id
    from mlflow import MlflowClient

    _assert_registered_and_described(MlflowClient(uri, registry_uri=uri), registered)  # the server links it once
    saved, got = load_file(tmp_path / "ckpt" / "model.safetensors"), load_file(loaded.folder / "model.safetensors")
    assert all(torch.equal(saved[k], got[k]) for k in saved)

"""GPT shapes, the N convention, checkpoints, and the MFU arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from transfer_laws.lightning_modules import (
    GPT,
    PRESETS,
    CheckpointError,
    GPTConfig,
    checkpoint_from_bytes,
    flops_per_token,
    load_checkpoint,
    mfu,
    non_embedding_params,
    peak_flops,
    preset,
    save_checkpoint,
    total_params,
)
from transfer_laws.lightning_modules.flops import peak_flops_for_name


@pytest.mark.parametrize(("layers", "heads", "width"), [(1, 1, 32), (2, 2, 64), (3, 3, 96), (4, 4, 128)])
def test_n_formula_matches_parameter_walk(layers: int, heads: int, width: int) -> None:
    config = GPTConfig(vocab_size=300, context_length=40, n_layer=layers, n_head=heads, n_embd=width)
    model = GPT(config)
    walked = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("wte.", "wpe.")))
    expected = 12 * layers * width**2 + 13 * layers * width + 2 * width
    assert non_embedding_params(config) == non_embedding_params(model) == walked == expected
    # The tied head is one table: the total adds exactly V*d + T*d once.
    assert total_params(model) == total_params(config) == expected + (300 + 40) * width
    assert model.lm_head.weight is model.wte.weight


def test_known_sizes() -> None:
    assert non_embedding_params(preset("2x64", vocab_size=2048)) == 100_096
    assert non_embedding_params(preset("6x128", vocab_size=2048)) == 1_189_888
    assert non_embedding_params(preset("8x320", vocab_size=2048)) == 9_864_320


def test_presets_span_1e4_to_1e9() -> None:
    sizes = {name: non_embedding_params(preset(name, vocab_size=50257, context_length=1024)) for name in PRESETS}
    assert min(sizes.values()) < 2e4
    assert max(sizes.values()) >= 1e9
    assert 1.2e8 < non_embedding_params(preset("gpt2-small", 50257)) + 50257 * 768 < 1.25e8  # GPT-2's 124M
    for name in ("2x32", "2x48", "2x64", "3x96", "4x128", "gpt2-small", "1b"):
        assert name in PRESETS


def test_settings_have_one_home() -> None:
    import transfer_laws.lightning_modules as package
    from transfer_laws.lightning_modules import config, data, model

    for module, names in ((package, ("GPTConfig", "PRESETS", "preset", "CheckpointError", "DataConfig", "BudgetError")),
                          (model, ("GPTConfig", "CheckpointError")),
                          (data, ("DataConfig", "BudgetError"))):
        for name in names:
            assert getattr(module, name) is getattr(config, name), f"{module.__name__}.{name}"
    assert not hasattr(model, "PRESETS") and not hasattr(model, "preset")  # no second path to the presets


def test_forward_loss_is_mean_cross_entropy_and_causal() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=32)).eval()
    x = torch.randint(0, 50, (3, 16))
    y = torch.randint(0, 50, (3, 16))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 50)
    assert loss is not None
    torch.testing.assert_close(loss, F.cross_entropy(logits.view(-1, 50), y.view(-1)))
    assert model(x)[1] is None
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    torch.testing.assert_close(model(changed)[0][:, :-1], logits[:, :-1])  # the future does not leak back
    assert not torch.allclose(model(changed)[0][:, -1], logits[:, -1])
    with pytest.raises(ValueError, match="exceeds context_length"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_config_validation_and_round_trip() -> None:
    config = GPTConfig(vocab_size=10, n_layer=3, n_head=4, n_embd=32, dropout=0.1)
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, n_head=3, n_embd=64)
    with pytest.raises(ValueError, match="vocab_size"):
        GPTConfig(vocab_size=0)
    with pytest.raises(ValueError, match="unknown GPTConfig keys"):
        GPTConfig.from_dict({"vocab_size": 10, "n_ctx": 5})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("3x7", vocab_size=10)


def _tiny() -> GPT:
    torch.manual_seed(1)
    return GPT(GPTConfig(vocab_size=64, context_length=16, n_layer=2, n_head=2, n_embd=32)).eval()


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _tiny()
    folder = save_checkpoint(model, tmp_path / "ckpt", extra={"run_id": "abc", "tokens_seen": 123})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["gpt"] == model.config.to_dict()
    loaded, extra = load_checkpoint(folder)
    assert extra == {"run_id": "abc", "tokens_seen": 123}
    assert loaded.lm_head.weight is loaded.wte.weight  # still tied after loading
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(loaded.eval()(x)[0], model(x)[0])


def test_truncated_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    folder = save_checkpoint(_tiny(), tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)

    weights.write_bytes(b"\xff" * 16 + good[16:])  # a garbage header
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)

    weights.write_bytes(good)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(folder)

    other = save_checkpoint(GPT(GPTConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, n_embd=32)),
                            tmp_path / "other")
    (folder / "config.json").write_text((other / "config.json").read_text())  # weights of another shape
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)

    weights.unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path / "nowhere")


def test_bytes_load_restores_what_safetensors_load_model_restores(tmp_path: Path) -> None:
    """The one reader builds from bytes; it must give the weights, and the tie, that safetensors' own loader gives
    (the file stores the tied table once, under lm_head.weight)."""
    from safetensors.torch import load_model

    model = _tiny()
    folder = save_checkpoint(model, tmp_path / "ckpt")
    reference = GPT(model.config)
    load_model(reference, str(folder / "model.safetensors"), strict=True)
    loaded, _ = checkpoint_from_bytes({name: (folder / name).read_bytes() for name in ("config.json",
                                                                                        "model.safetensors")}, "here")
    assert loaded.lm_head.weight is loaded.wte.weight
    got, want = loaded.state_dict(), reference.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(loaded.eval()(x)[0], model(x)[0])
    # Built on the meta device and given the loaded tensors: every parameter is real and trains.
    params = list(loaded.parameters())
    assert len(params) == len(list(reference.parameters()))
    assert not any(p.is_meta for p in params) and all(p.requires_grad for p in params)
    loaded.train()(x, x)[1].backward()
    assert all(p.grad is not None for p in params)


def test_weights_missing_a_table_or_holding_an_extra_one_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save

    folder = save_checkpoint(_tiny(), tmp_path / "ckpt")
    config = (folder / "config.json").read_bytes()
    state = {k: v.contiguous() for k, v in _tiny().state_dict().items() if k != "wte.weight"}  # as save_model does
    for bad, message in (({k: v for k, v in state.items() if k != "wpe.weight"}, "missing.*wpe.weight"),
                         ({**state, "extra.weight": torch.zeros(2)}, "unexpected.*extra.weight")):
        with pytest.raises(CheckpointError, match=f"here: corrupt or truncated model.safetensors.*{message}"):
            checkpoint_from_bytes({"config.json": config, "model.safetensors": save(bad)}, "here")
    with pytest.raises(CheckpointError, match="checkpoint here has no model.safetensors"):
        checkpoint_from_bytes({"config.json": config}, "here")


def test_flops_per_token_is_nanogpt_count() -> None:
    gpt2 = preset("gpt2-small", vocab_size=50257, context_length=1024)
    # nanoGPT: 6 * 123.65M params (tied wte kept, wpe dropped) + 12*L*d*T.
    assert flops_per_token(gpt2) == 6 * 123_653_376 + 12 * 12 * 768 * 1024
    assert flops_per_token(gpt2) == pytest.approx(855.2e6, rel=1e-3)


def test_peaks_and_mfu() -> None:
    assert peak_flops_for_name("NVIDIA H100 80GB HBM3") == 989.5e12
    assert peak_flops_for_name("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_for_name("NVIDIA H200") == 989.5e12
    assert peak_flops_for_name("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_for_name("NVIDIA L40S") == 362.05e12
    assert peak_flops_for_name("Some Future Card") is None
    assert peak_flops("cpu") is None
    gpt2 = preset("gpt2-small", vocab_size=50257, context_length=1024)
    # 379k tokens/s on an H100 SXM is ~32.8% (nanoGPT PR #464, anchors.md).
    assert mfu(379e3, gpt2, 989.5e12) == pytest.approx(0.3276, abs=1e-3)
    assert mfu(1e5, gpt2, None) is None

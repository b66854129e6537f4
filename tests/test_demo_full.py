"""``demo --full`` without training: its preset (explicit flags win), its plan of runs for both sources, and
``--quick --full`` refused in one line with exit 2."""

from __future__ import annotations

import pytest

from transfer_laws.plugin.sweeps import DemoArgs as Args
from transfer_laws.plugin.sweeps.demo import FULL, SOURCES_FULL, apply_preset, plan_compute
from transfer_laws.scripts import cli


def test_full_preset_widens_the_grid_and_explicit_flags_win() -> None:
    args = apply_preset(Args(full=True))
    assert args.d_f_tokens == FULL["d_f_tokens"] and args.scratch_tokens == FULL["scratch_tokens"]
    assert max(args.d_f_tokens) / min(args.d_f_tokens) >= 10 and max(args.scratch_tokens) > 60_000
    assert args.patience == FULL["patience"]
    mine = apply_preset(Args(full=True, d_f_tokens=[700, 7000]))
    assert mine.d_f_tokens == [700, 7000] and mine.scratch_tokens == FULL["scratch_tokens"]
    assert apply_preset(Args()).patience is None  # the short demo keeps its recipes


def test_full_plans_both_sources_at_the_same_sizes_and_shares_the_scratch_runs() -> None:
    args = apply_preset(Args(full=True))
    plan = plan_compute(args)
    per_source = 1 + len(args.d_f_tokens)
    assert len(plan) == len(args.sizes) * (len(SOURCES_FULL) * per_source + len(args.scratch_tokens))
    assert SOURCES_FULL == ("text", "mix")


def test_quick_and_full_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--quick", "--full"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--quick and --full" in err[0]


def test_full_pins_each_law_from_its_own_checkpoints_with_the_demo_recipe() -> None:
    from dataclasses import replace

    from transfer_laws.plugin.recipes import scratch
    from transfer_laws.plugin.sweeps import parse_budget
    from transfer_laws.plugin.sweeps.demo import pin_args

    args = apply_preset(Args(full=True))
    train = replace(scratch.TRAIN, max_steps=args.run_max_steps, patience=args.patience)
    mix = pin_args(args, "sqlite:///store.db", "mix-to-python", "mix", 12.5, train)
    assert mix.law == "mix-to-python" and mix.from_template == "models:/pretrained-mix@demo-{size}"
    assert parse_budget(mix.budget).minutes == 12.5 and mix.train.patience == 8
    text = pin_args(args, "sqlite:///store.db", "text-to-python", "text", 12.5, train)
    assert text.from_template == "models:/pretrained-text@demo-{size}" and text.study != mix.study

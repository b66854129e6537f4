"""Peak memory and time of loading a checkpoint: our one reader against safetensors' own file load.

A checkpoint of a few hundred MB is saved once; each repeat loads it in a fresh interpreter, so the peak resident
set (``ru_maxrss``) belongs to the load alone (imports are done before the baseline is read). Two ways, alternating:

- ``safetensors``: build the GPT, then ``safetensors.torch.load_model(model, file)`` (the load before issue 15);
- ``ours``: ``lightning_modules.model.load_checkpoint``: each file read once, the GPT built from those bytes (what
  the registry does after checking the same bytes against the manifest).

Prints medians and the ratios ours / safetensors, in units of the weights file's size.

    python benchmarks/bench_checkpoint_load.py [--preset 8x512] [--vocab 32000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import json, resource, sys, time
from pathlib import Path
import torch, safetensors.torch
from transfer_laws.lightning_modules.model import GPT, GPTConfig, load_checkpoint
folder, way = Path(sys.argv[1]), sys.argv[2]
config = GPTConfig.from_dict(json.loads((folder / "config.json").read_text())["gpt"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if way == "safetensors":
    model = GPT(config)
    safetensors.torch.load_model(model, str(folder / "model.safetensors"))
else:
    model, _ = load_checkpoint(folder)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mb": (peak - before) / 1024, "s": seconds}))
"""


def _once(folder: Path, way: str) -> dict[str, float]:
    import json

    done = subprocess.run([sys.executable, "-c", PROBE, str(folder), way], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="8x512")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transfer_laws.lightning_modules.config import preset
    from transfer_laws.lightning_modules.model import GPT, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_checkpoint(GPT(preset(args.preset, vocab_size=args.vocab)), Path(tmp) / "ckpt")
        size_mb = (folder / "model.safetensors").stat().st_size / 2**20
        runs: dict[str, list[dict[str, float]]] = {"safetensors": [], "ours": []}
        for _ in range(args.repeats):
            for way in runs:
                runs[way].append(_once(folder, way))
    med = {way: {k: statistics.median(r[k] for r in rs) for k in ("mb", "s")} for way, rs in runs.items()}
    print(f"checkpoint {args.preset}, vocab {args.vocab}: weights file {size_mb:.0f} MB, {args.repeats} repeats")
    for way, m in med.items():
        print(f"  {way:12s} peak +{m['mb']:7.0f} MB ({m['mb'] / size_mb:.2f}x the file)   {m['s']:.2f} s")
    print(f"  ours / safetensors: memory {med['ours']['mb'] / med['safetensors']['mb']:.2f}x, "
          f"time {med['ours']['s'] / med['safetensors']['s']:.2f}x")


if __name__ == "__main__":
    main()

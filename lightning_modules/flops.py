"""Model FLOPs utilisation: nanoGPT's analytic FLOP count against the card's dense bf16 peak.

MFU = achieved model FLOP/s / peak FLOP/s. Model FLOPs per token follow nanoGPT (Chowdhery et al. 2022, appendix
B): ``6*N' + 12*L*H*Q*T`` where ``N'`` is nanoGPT's parameter count (every parameter except the position embedding:
our non-embedding N plus the tied V x d unembedding, whose matmul is real work), L layers, H heads, Q head width
and T the context length. Peaks are dense (not sparse) bf16 tensor-core numbers per GPU.
"""

from __future__ import annotations

import torch

from transfer_laws.lightning_modules.config import GPTConfig

# Dense bf16 peaks, FLOP/s per GPU; the first matching substring of the CUDA device name wins (most specific first).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835.5e12),
    ("H100", 989.5e12),
    ("H200", 989.5e12),
    ("GH200", 989.5e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362.05e12),
    ("L40", 181.05e12),
    ("A10G", 70e12),
    ("L4", 121e12),
    ("RTX 4090", 165.2e12),
)


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token, nanoGPT's ``6*N' + 12*L*H*Q*T`` (forward + backward).

    ``N' = N + V*d``: non-embedding N plus the tied unembedding (nanoGPT's count, which keeps the tied table and
    drops only the position embedding). ``12*L*H*Q*T`` is attention's score and value matmuls at full context T
    (H*Q = d). For GPT-2 small (L=12, d=768, T=1024, V=50257) this is ~855 MFLOP/token.
    """
    n_flop_params = config.non_embedding_params() + config.vocab_size * config.n_embd
    return 6.0 * n_flop_params + 12.0 * config.n_layer * config.n_embd * config.context_length


def peak_flops(device: torch.device | str | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device (by its name), or None on CPU and for unknown cards."""
    device = torch.device(device) if device is not None else None
    if device is None:
        if not torch.cuda.is_available():
            return None
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def peak_flops_for_name(name: str) -> float | None:
    """The dense bf16 peak for a CUDA device name such as ``NVIDIA H100 80GB HBM3``; None if not in the table."""
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in name.lower():
            return flops
    return None


def mfu(tokens_per_s: float, config: GPTConfig, peak: float | None) -> float | None:
    """Fraction of ``peak`` achieved at ``tokens_per_s`` (per GPU), or None without a known peak."""
    if peak is None or peak <= 0:
        return None
    return tokens_per_s * flops_per_token(config) / peak

"""Why Psi-W0 runs in pixel space: what a small Wan VAE round trip costs at 64 px on the CPU.

A latent-space W0 must encode the context and decode every predicted frame (the reward model
and the observation read pixels), so the VAE's cost is paid on every env step. Compare the
numbers printed here with ``psi-gym eval-w0 ... --json`` ``ms_per_step`` (the whole pixel-space
W0 step). Run: ``python benchmarks/wan_vae_cost.py [--threads 1] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from diffusers import AutoencoderKLWan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for base_dim in (16, 32):
        # two spatial downsamplings (64 px -> 16x16 latents), no temporal downsampling
        vae = AutoencoderKLWan(base_dim=base_dim, z_dim=16, dim_mult=[1, 2, 4], temperal_downsample=[False, False]).eval()
        params = sum(p.numel() for p in vae.parameters())
        for batch in (1, 16):
            x = torch.randn(batch, 3, 1, 64, 64)
            encode, decode = [], []
            with torch.no_grad():
                vae.decode(vae.encode(x).latent_dist.mode())  # warm up
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    z = vae.encode(x).latent_dist.mode()
                    encode.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    vae.decode(z)
                    decode.append(time.perf_counter() - start)
            rows.append({"base_dim": base_dim, "parameters": params, "batch": batch, "latent_shape": list(z.shape),
                         "encode_ms": 1e3 * statistics.median(encode), "decode_ms": 1e3 * statistics.median(decode)})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

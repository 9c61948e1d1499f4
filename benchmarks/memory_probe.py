"""One peak-memory measurement in a fresh process; prints one JSON line.

python -m benchmarks.memory_probe occlusion --batch 16 --stride 8 --size 224
python -m benchmarks.memory_probe activation_max --batch 1 --steps 32 --size 224
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.memory import peak_bytes, rss_bytes
from benchmarks.occlusion_params import occlusion_params
from cnnlens.methods.run import attribute
from cnnlens.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=["occlusion", "activation_max"])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1, help="occlusion: images per forward")
    parser.add_argument("--images", type=int, default=1, help="input batch")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--engine", default=None, help="occlusion engine (default: its own)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaded = load_model(args.model).to(device)
    x = torch.zeros(args.images, 3, args.size, args.size, device=device)
    with torch.no_grad():
        loaded.module(x[:1])  # allocator and kernels warm; not part of the peak
    assert loaded.layers.default_layer  # the layer inventory is traced once per model
    if args.method == "occlusion":
        params = occlusion_params(args.window, args.stride, args.batch, args.engine)
    else:
        params = {"steps": args.steps}
    peak = peak_bytes(lambda: attribute(args.method, loaded, x, target=945, **params), device)
    print(json.dumps({"peak_bytes": peak, "rss_bytes": rss_bytes(), "params": params}))


if __name__ == "__main__":
    main()

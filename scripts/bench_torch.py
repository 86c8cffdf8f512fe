"""The capstone CNN (lib/models/builder.ts cnn3) in PyTorch on CPU, timed exactly as scripts/bench.ts times
TF.js: batch 128, a warm-up, then the median of timed repeats of training steps (Adam) and
of inference. Prints one JSON object. Used by `npm run bench -- --torch` as the native
reference measured in the same run.

Usage: python3 scripts/bench_torch.py --threads 2 --repeats 5 --steps 5 --batch-size 128
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn


def capstone_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(1152, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = capstone_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    xs = torch.rand(args.batch_size, 1, 28, 28)
    ys = torch.randint(0, 10, (args.batch_size,))
    infer_x = torch.rand(args.batch_size * args.steps, 1, 28, 28)

    def train_once() -> float:
        model.train()
        started = time.perf_counter()
        for _ in range(args.steps):
            optimizer.zero_grad()
            loss_fn(model(xs), ys).backward()
            optimizer.step()
        return args.steps * args.batch_size / (time.perf_counter() - started)

    def infer_once() -> float:
        model.eval()
        started = time.perf_counter()
        with torch.no_grad():
            for batch in infer_x.split(args.batch_size):
                model(batch)
        return args.steps * args.batch_size / (time.perf_counter() - started)

    train_once()
    infer_once()
    train, infer = [], []
    for _ in range(args.repeats):
        train.append(train_once())
        infer.append(infer_once())
    print(json.dumps({
        "framework": f"PyTorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainImagesPerSec": statistics.median(train),
        "inferImagesPerSec": statistics.median(infer),
        "trainRepeats": train,
        "inferRepeats": infer,
    }))


if __name__ == "__main__":
    main()

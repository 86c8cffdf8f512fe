"""The capstone CNN (lib/models/builder.ts cnn3) or the VGG-style nets with batch norm (vgg-bn and
its wider presets vgg-bn-48, vgg-bn-64) in PyTorch on CPU, timed exactly as scripts/bench.ts times TF.js: batch 128, a warm-up, then the
median of timed repeats of training steps (Adam, or SGD with Nesterov momentum as the budget
recipes train) and of inference. In fp32, or in bf16 with
autocast and channels-last tensors (PyTorch's fast path on CPUs with AVX512-BF16 or AMX).
Prints one JSON object. Used by `npm run bench -- --torch` as the native reference measured in
the same run.

Usage: python3 scripts/bench_torch.py --model cnn3|vgg-bn|vgg-bn-48|vgg-bn-64 --precision fp32|bf16 --threads 2 --repeats 5 --steps 5 --batch-size 128 [--optimizer adam|sgd-nesterov]
"""
import contextlib
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


def vgg_bn(width: int) -> nn.Module:
    """Blocks of two 'same' 3x3 conv (no bias, as the project's) + batch norm + relu (width, 2 width,
    4 width filters), max-pooled 2, 2 and 7 (global), dense 10."""
    layers: list[nn.Module] = []
    channels = 1
    for filters, pool in ((width, 2), (2 * width, 2), (4 * width, 7)):
        for _ in range(2):
            layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU()]
            channels = filters
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * width, 10))


MODELS = {"cnn3": capstone_cnn, "vgg-bn": lambda: vgg_bn(32), "vgg-bn-48": lambda: vgg_bn(48), "vgg-bn-64": lambda: vgg_bn(64)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn3")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--optimizer", choices=["adam", "sgd-nesterov"], default="adam")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    bf16 = args.precision == "bf16"
    # bf16: the weights stay fp32; autocast runs convolutions and matrix products in bf16, on
    # channels-last tensors, as PyTorch recommends for oneDNN on CPU.
    layout = torch.channels_last if bf16 else torch.contiguous_format
    model = MODELS[args.model]().to(memory_format=layout)
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True) if args.optimizer == "sgd-nesterov"
                 else torch.optim.Adam(model.parameters(), lr=1e-3))
    loss_fn = nn.CrossEntropyLoss()
    xs = torch.rand(args.batch_size, 1, 28, 28).to(memory_format=layout)
    ys = torch.randint(0, 10, (args.batch_size,))
    infer_x = torch.rand(args.batch_size * args.steps, 1, 28, 28).to(memory_format=layout)

    def precision():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def train_once() -> float:
        model.train()
        started = time.perf_counter()
        for _ in range(args.steps):
            optimizer.zero_grad()
            with precision():
                loss = loss_fn(model(xs), ys)
            loss.backward()
            optimizer.step()
        return args.steps * args.batch_size / (time.perf_counter() - started)

    def infer_once() -> float:
        model.eval()
        started = time.perf_counter()
        with torch.no_grad(), precision():
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
        "model": args.model,
        "precision": args.precision,
        "optimizer": args.optimizer,
        "threads": torch.get_num_threads(),
        # With batch norm's running statistics, as TF.js counts parameters.
        "parameters": sum(p.numel() for p in model.parameters()) + sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked")),
        "trainImagesPerSec": statistics.median(train),
        "inferImagesPerSec": statistics.median(infer),
        "trainRepeats": train,
        "inferRepeats": infer,
    }))


if __name__ == "__main__":
    main()

"""PyTorch side of the training-throughput benchmark: the nets and activations of necrosis, trained
in PyTorch on the CPU, for scripts/bench_compare.sh to set against examples/bench_train.rs.

Step mode (default): trains `--arch` with each `--activation` on random inputs, SGD with momentum
0.9, lr 0.01, `--batch`, `--threads`, and prints the batch over the median step time (forward,
loss, backward, optimiser), as the Rust bench does, one line per activation:
    pytorch relu lenet b64: 3210.4 img/s
Whole-run mode (`--whole-run`): what `bench_train`'s phase run does, on synthetic data of the
same sizes: a forward pass over the probe set and a test evaluation before training, then per
epoch a shuffled pass over the training set, a test evaluation, a probe pass and a checkpoint;
prints the training images over the whole wall time:
    pytorch relu lenet whole-run: 2510.2 img/s end to end (...)
Run: $PYTHON scripts/bench_pytorch.py [--activation relu,relu-softsign] [--arch lenet|cifar|
cifar-bn|resnet20] [--image-size 28] [--channels 1] [--batch 64] [--threads 2] [--steps 150]
[--warmup 20] [--whole-run --samples 8192 --epochs 2 --probe 2048 --test 2048]
"""
import argparse
import math
import os
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 10


class ReluSoftplus(nn.Module):
    """necrosis' relu-softplus: x for x > 0, softplus(x) − ln 2 otherwise (continuous at 0).
    No PyTorch built-in; written as a user would, elementwise ops under autograd."""

    def forward(self, x):
        return torch.where(x > 0, x, F.softplus(x) - math.log(2.0))


class ReluSoftsign(nn.Module):
    """necrosis' relu-softsign: x for x > 0, x / (1 + |x|) otherwise."""

    def forward(self, x):
        return torch.where(x > 0, x, x / (1 + x.abs()))


# necrosis' built-ins (trainer/src/activation.rs), with PyTorch's own module where one exists.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky-relu": lambda: nn.LeakyReLU(0.01),
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "relu-softplus": ReluSoftplus,
    "relu-softsign": ReluSoftsign,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": lambda: nn.GELU(approximate="tanh"),
    "swish": nn.SiLU,
}


def conv(c_in, c_out, kernel, stride=1, padding=0):
    # necrosis' conv layers keep their bias even before BN (trainer/src/model.rs), so these do.
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=True)


class Residual(nn.Module):
    """records/src/architecture.rs' `res:OUT:STRIDE`: conv1 3×3 (stride, pad 1) → bn1 → act →
    conv2 3×3 (pad 1) → bn2, plus the identity or, when the shape changes, a 1×1 conv (stride) →
    BN shortcut; the sum then goes through the activation."""

    def __init__(self, c_in, out, stride, act):
        super().__init__()
        self.conv1 = conv(c_in, out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out)
        self.act1 = act()
        self.conv2 = conv(out, out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out)
        self.proj = None
        if stride != 1 or c_in != out:
            self.proj = nn.Sequential(conv(c_in, out, 1, stride, 0), nn.BatchNorm2d(out))
        self.act2 = act()

    def forward(self, x):
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        shortcut = x if self.proj is None else self.proj(x)
        return self.act2(y + shortcut)


def build(arch, act, channels, size):
    """The presets of trainer/src/arch.rs, layer for layer (BN: eps 1e-5, momentum 0.1, as there)."""
    if arch == "lenet":
        pad = 1 if size < 16 else 0
        side = ((size + 2 * pad - 2) // 2 + 2 * pad - 2) // 2
        return nn.Sequential(
            conv(channels, 32, 3, 1, pad), act(), nn.MaxPool2d(2),
            conv(32, 64, 3, 1, pad), act(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * side * side, 128), act(), nn.Linear(128, CLASSES),
        )
    if arch in ("cifar", "cifar-bn"):
        bn = arch == "cifar-bn"

        def block(c_in, c_out):
            layers = [conv(c_in, c_out, 3, 1, 1)]
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            return layers + [act()]

        side = size // 2 // 2
        head = [nn.Flatten(), nn.Linear(64 * side * side, 512)]
        head += [nn.BatchNorm1d(512)] if bn else []
        return nn.Sequential(
            *block(channels, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            *head, act(), nn.Linear(512, CLASSES),
        )
    if arch == "resnet20":
        layers = [conv(channels, 16, 3, 1, 1), nn.BatchNorm2d(16), act()]
        c = 16
        for out, stride in [(16, 1)] * 3 + [(32, 2), (32, 1), (32, 1), (64, 2), (64, 1), (64, 1)]:
            layers.append(Residual(c, out, stride, act))
            c = out
        # gap: necrosis averages the whole (square) plane, as AdaptiveAvgPool2d(1) does.
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, CLASSES)]
        return nn.Sequential(*layers)
    raise SystemExit(f"unknown --arch {arch!r} (lenet, cifar, cifar-bn, resnet20)")


def make(args, activation):
    torch.manual_seed(0)
    model = build(args.arch, ACTIVATIONS[activation], args.channels, args.image_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt


def step_speed(args, activation):
    """The batch over the median step time, after `--warmup` steps."""
    model, opt = make(args, activation)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, args.channels, args.image_size, args.image_size)
    y = torch.randint(0, CLASSES, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    # Median step time, as the Rust bench reports it: robust to the steps a co-tenant slows down.
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    median = seconds[len(seconds) // 2]
    print(f"pytorch {activation} {args.arch} b{args.batch}: {args.batch / median:.1f} img/s",
          flush=True)


def whole_run(args, activation):
    """bench_train's phase run (train::run) in PyTorch: the same work in the same order."""
    shape = (args.channels, args.image_size, args.image_size)
    g = torch.Generator().manual_seed(0)
    train_x = torch.rand(args.samples, *shape, generator=g)
    train_y = torch.randint(0, CLASSES, (args.samples,), generator=g)
    test_x = torch.rand(args.test, *shape, generator=g)
    test_y = torch.randint(0, CLASSES, (args.test,), generator=g)
    probe = torch.randperm(args.samples, generator=g)[: min(args.probe, args.samples)].sort().values
    probe_x = train_x[probe]
    loss_fn = nn.CrossEntropyLoss()
    # necrosis evaluates and probes in batches of 64 (EVAL_BATCH in trainer/src/train/mod.rs).
    eval_batch = 64

    def evaluate(model):
        model.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(test_x), eval_batch):
                out = model(test_x[i:i + eval_batch])
                loss += loss_fn(out, test_y[i:i + eval_batch]).item() * len(out)
                correct += (out.argmax(1) == test_y[i:i + eval_batch]).sum().item()
        return loss / len(test_x), correct / len(test_x)

    def probe_pass(model):
        # The forward pass alone: necrosis' probe also reduces per-neuron statistics, which a
        # plain PyTorch script does not compute, so this side does less work, not more.
        model.eval()
        with torch.no_grad():
            for i in range(0, len(probe_x), eval_batch):
                model(probe_x[i:i + eval_batch])

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model, opt = make(args, activation)
        probe_pass(model)
        evaluate(model)
        for epoch in range(1, args.epochs + 1):
            model.train()
            order = torch.randperm(args.samples, generator=g)
            loss_sum, correct = 0.0, 0
            # The last batch may be short, as in necrosis.
            for i in range(0, args.samples, args.batch):
                idx = order[i:i + args.batch]
                xb, yb = train_x[idx], train_y[idx]
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
                opt.step()
                # necrosis sums the epoch's training loss and accuracy step by step.
                loss_sum += loss.item() * len(idx)
                correct += (out.argmax(1) == yb).sum().item()
            evaluate(model)
            probe_pass(model)
            # necrosis writes a checkpoint (weights and optimiser state) every epoch.
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()},
                       os.path.join(tmp, "checkpoint.pt"))
        total = time.perf_counter() - start
    trained = args.samples * args.epochs
    print(
        f"pytorch {activation} {args.arch} whole-run: {trained / total:.1f} img/s end to end "
        f"({trained} training images / {total:.2f} s wall time of the {args.epochs}-epoch run; "
        f"epoch-0 probe, test evaluations ({args.test} samples), probe forward passes "
        f"({len(probe_x)} samples) and checkpoints included)",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activation", default="relu",
                        help="one or more, comma-separated: " + ", ".join(ACTIVATIONS))
    parser.add_argument("--arch", default="lenet", choices=["lenet", "cifar", "cifar-bn", "resnet20"])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="timed steps (step mode)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (step mode)")
    parser.add_argument("--whole-run", action="store_true")
    parser.add_argument("--samples", type=int, default=8192, help="training samples (whole run)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (whole run)")
    parser.add_argument("--probe", type=int, default=2048, help="probe samples (whole run)")
    parser.add_argument("--test", type=int, default=None,
                        help="test samples (whole run; default ceil(samples/4), as necrosis' synthetic set)")
    args = parser.parse_args()
    if args.test is None:
        args.test = -(-args.samples // 4)
    activations = args.activation.split(",")
    for name in activations:
        if name not in ACTIVATIONS:
            parser.error(f"unknown activation {name!r}; built-ins: {', '.join(ACTIVATIONS)}")
    torch.set_num_threads(args.threads)
    for name in activations:
        (whole_run if args.whole_run else step_speed)(args, name)


if __name__ == "__main__":
    main()

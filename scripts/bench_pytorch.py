"""PyTorch side of the training-throughput benchmark (examples/bench_train.rs).

Trains the same LeNet (conv32 k3 → relu → maxpool 2 → conv64 k3 → relu → maxpool 2 → fc128 → relu
→ fc10) on random 28×28 inputs, batch 64, SGD with momentum, on the CPU with 2 threads, and prints
one line in the form the Rust bench uses, from the median step time:
    pytorch relu: 3210.4 img/s
Run: python3 scripts/bench_pytorch.py [--steps 150] [--threads 2]
"""
import argparse
import time

import torch
import torch.nn as nn


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = lenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    # Median step time, as the Rust bench reports it: robust to the steps a co-tenant slows down.
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    median = seconds[len(seconds) // 2]
    print(f"pytorch relu: {args.batch / median:.1f} img/s")


if __name__ == "__main__":
    main()

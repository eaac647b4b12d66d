"""The hand-captured reference loop that python -m lenet5.bench --device gpu compares
train_pytorch/train.py with: the data on the GPU, batches indexed there, and the whole step
(forward, backward, Adam with its learning rate in a device tensor) captured in one CUDA graph, as
PyTorch's CUDA-graph documentation does it. The same model, data and recipe (Adam, cosine schedule
stepped per batch); the last, smaller batch of each epoch dropped, as the simplest loop would.
--compile runs the same step under torch.compile(mode="reduce-overhead") instead. On the CPU (the
tests) the step runs eagerly."""

import math
import time

import torch
import torch.nn.functional as F

from lenet5.bench.baseline import EpochTimer, baseline_args
from lenet5.config import ADAM_BETAS, ADAM_EPS
from lenet5.data.splits import load_splits
from model_pytorch import LeNet5


def main(argv=None):
    args = baseline_args("pytorch", argv, devices=True, compiles=True)
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_splits(limit_train=args.limit_train, limit_test=args.limit_test, data_dir=args.data_dir, progress=False)
    train_x, train_y, test_x, test_y = (
        torch.from_numpy(a).to(device) for a in (data.train.x, data.train.y, data.test.x, data.test.y)
    )
    model = LeNet5().to(device)
    lr = torch.tensor(args.lr, device=device)
    capturable = device.type == "cuda"
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr if capturable else args.lr, betas=ADAM_BETAS, eps=ADAM_EPS, capturable=capturable
    )
    steps = len(train_y) // args.batch_size
    x = torch.empty((args.batch_size, *train_x.shape[1:]), device=device)
    y = torch.empty(args.batch_size, dtype=torch.long, device=device)

    def step():
        optimizer.zero_grad(set_to_none=False)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    x.copy_(train_x[: args.batch_size])  # a real batch for the warm-up, at a learning rate of 0
    y.copy_(train_y[: args.batch_size])
    lr.fill_(0.0)
    run = step
    if args.compile:
        run = torch.compile(step, mode="reduce-overhead")
    elif capturable:  # warm up on a side stream, then capture (docs: "whole network capture")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run = graph.replay
    timer, done = EpochTimer(), 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_y), device=device)
        for i in range(steps):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x.copy_(train_x[idx])
            y.copy_(train_y[idx])
            rate = 0.5 * args.lr * (1 + math.cos(math.pi * done / (args.epochs * steps)))
            if capturable:
                lr.fill_(rate)
            else:
                optimizer.param_groups[0]["lr"] = rate
            run()
            done += 1
        if capturable:
            torch.cuda.synchronize()
        trained = time.perf_counter()
        model.eval()
        with torch.no_grad():
            correct = (model(test_x).argmax(1) == test_y).sum().item()
        timer.add(trained - start, time.perf_counter() - trained, correct / len(test_y))
    timer.write(args.output, steps * args.batch_size, len(test_y))


if __name__ == "__main__":
    main()

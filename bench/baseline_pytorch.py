"""The idiomatic PyTorch loop that python -m lenet5.bench compares train_pytorch/train.py with:
a DataLoader over a TensorDataset, as in the PyTorch tutorials and d2l, with the same model, data
and recipe (Adam, cosine schedule stepped per batch); on a GPU, each batch sent there with .to()."""

import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lenet5.bench.baseline import EpochTimer, baseline_args
from lenet5.config import ADAM_BETAS, ADAM_EPS
from lenet5.data.splits import load_splits
from model_pytorch import LeNet5


def main(argv=None):
    args = baseline_args("pytorch", argv, devices=True)
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_splits(limit_train=args.limit_train, limit_test=args.limit_test, data_dir=args.data_dir, progress=False)
    train = DataLoader(
        TensorDataset(*map(torch.from_numpy, (data.train.x, data.train.y))), batch_size=args.batch_size, shuffle=True
    )
    test = DataLoader(TensorDataset(*map(torch.from_numpy, (data.test.x, data.test.y))), batch_size=args.batch_size)
    model = LeNet5().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train))
    timer = EpochTimer()
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's queued steps done
        trained = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
        timer.add(trained - start, time.perf_counter() - trained, correct / len(test.dataset))
    timer.write(args.output, len(train.dataset), len(test.dataset))


if __name__ == "__main__":
    main()

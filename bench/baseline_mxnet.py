"""The idiomatic Gluon loop that python -m lenet5.bench compares train_mxnet/train.py with: a
DataLoader over an ArrayDataset and a hybridized network, as in the Gluon tutorials and d2l, with
the same model, data and recipe (Adam, cosine schedule per update)."""

import time

import mxnet as mx
from mxnet import autograd, gluon

from lenet5.bench.baseline import EpochTimer, baseline_args
from lenet5.config import ADAM_BETAS, ADAM_EPS
from lenet5.data.splits import load_splits, num_batches
from model_mxnet import LeNet5


def main(argv=None):
    args = baseline_args("mxnet", argv)
    mx.random.seed(args.seed)
    data = load_splits(limit_train=args.limit_train, limit_test=args.limit_test, data_dir=args.data_dir, progress=False)
    train = gluon.data.DataLoader(
        gluon.data.ArrayDataset(mx.nd.array(data.train.x), mx.nd.array(data.train.y)),
        batch_size=args.batch_size,
        shuffle=True,
    )
    test = gluon.data.DataLoader(
        gluon.data.ArrayDataset(mx.nd.array(data.test.x), mx.nd.array(data.test.y)), batch_size=args.batch_size
    )
    model = LeNet5()
    model.initialize()
    model.hybridize()
    schedule = mx.lr_scheduler.CosineScheduler(
        args.epochs * num_batches(len(data.train), args.batch_size), base_lr=args.lr, final_lr=0
    )
    trainer = gluon.Trainer(
        model.collect_params(),
        "adam",
        {
            "learning_rate": args.lr,
            "lr_scheduler": schedule,
            "beta1": ADAM_BETAS[0],
            "beta2": ADAM_BETAS[1],
            "epsilon": ADAM_EPS,
        },
    )
    cross_entropy = gluon.loss.SoftmaxCrossEntropyLoss()
    timer = EpochTimer()
    for _ in range(args.epochs):
        start = time.perf_counter()
        for x, y in train:
            with autograd.record():
                loss = cross_entropy(model(x), y)
            loss.backward()
            trainer.step(x.shape[0])
        mx.nd.waitall()
        trained = time.perf_counter()
        accuracy = mx.metric.Accuracy()
        for x, y in test:
            accuracy.update(y, model(x))
        timer.add(trained - start, time.perf_counter() - trained, accuracy.get()[1])
    timer.write(args.output, len(data.train), len(data.test))


if __name__ == "__main__":
    main()

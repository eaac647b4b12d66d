"""Train LeNet-5 on MNIST with PyTorch.

    python train.py                                  # the default recipe
    python train.py --pooling avg --activation tanh  # another cell of the results table
    python train.py --resume runs/<run folder>       # continue an interrupted run
    torchrun --nproc-per-node 2 train.py             # data-parallel, in 2 processes (docs/distributed.md)

Kept parallel to train_tensorflow/train.py and train_mxnet/train.py: a diff of two of them
shows only what the frameworks force. The options, data and run folder come from lenet5/.
"""

import functools
import os
import sys
import warnings
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lenet5.config import ADAM_BETAS, ADAM_EPS, resolve_threads
from lenet5.data.splits import augmenter, splits_of
from lenet5.files import first_line
from lenet5.network import lecun98
from lenet5.training.cli import run_command
from lenet5.training.distributed import World
from lenet5.training.loop import Steps, fit
from lenet5.training.run import Run
from lenet5.training.runfolder import RunError
from model_pytorch import build, num_params
from model_pytorch.convert import to_neutral
from train_pytorch.data import DeviceAugmenter, on_device
from train_pytorch.graph import CapturedStep, eager_reason
from train_pytorch.sdlm import SDLM, estimate_hessian

FRAMEWORK = "pytorch"

# C1's weight has one input channel: its gradient's stride in that dimension of size 1 differs from
# the weight's, and means nothing, but DDP warns at every step.
warnings.filterwarnings("ignore", "Grad strides do not match bucket view strides")


def set_threads(n, batch_size):
    """Use --threads N CPU threads (0: auto, see resolve_threads); returns how many."""
    torch.set_num_threads(resolve_threads(n, batch_size))
    return torch.get_num_threads()


def select_device(name):
    if name == "gpu" and not torch.cuda.is_available():
        raise RunError("--device gpu: PyTorch sees no CUDA GPU here; use --device cpu or auto")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # torchrun: one GPU per process


def join_world(cfg, device):
    """This process's place among those torchrun started (RANK, WORLD_SIZE; alone if unset), with
    their process group: gloo on the CPU, NCCL on GPUs."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return World()
    where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    try:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=cfg.peer_timeout),
            device_id=device if device.type == "cuda" else None,
        )
    except (dist.DistError, RuntimeError, ValueError) as error:  # a port in use, a peer that never comes
        raise RunError(f"cannot start the process group at {where}: {first_line(error, sentences=2)}") from None
    return World(dist.get_rank(), dist.get_world_size())


def all_sum(values, device):
    """`values` summed over the processes (lenet5.training.stopping agrees on sums and stop signals with it)."""
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


@contextmanager
def peers_lost():
    """A collective that fails (a process died, or hangs past --peer-timeout) ends this one with one
    line. In backward, where DDP all-reduces, gloo's errors come as plain RuntimeErrors."""
    try:
        yield
    except RuntimeError as error:
        if not (isinstance(error, dist.DistError) or "gloo" in str(error) or "NCCL" in str(error)):
            raise
        raise RunError(f"lost the other processes: {first_line(error, sentences=2)}") from None


def make_optimizer(cfg, model):
    if cfg.optimizer == "sdlm":
        return SDLM(model.parameters(), cfg.lr, cfg.mu)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam  # decoupled decay, or L2
    return adam(model.parameters(), lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=cfg.weight_decay)


def loss_of(logits, y, arch, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy; lecun98's MAP loss is the cross-entropy over its outputs and a constant -J."""
    if arch == "lecun98":
        logits = F.pad(logits, (0, 1), value=-lecun98.J)
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction=reduction)


def make_steps(model, net, optimizer, split, cfg, device, world, captured):
    """The framework's part of the training loop (lenet5.training.loop.Steps). In a data-parallel
    run, `net` is the DistributedDataParallel wrapper of `model`, and this process trains on its share.
    `captured`: replay the step from a CUDA graph (train_pytorch/graph.py)."""

    def train(x, y, lr, divisor):
        net.train()
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)  # (already there, from batches)
        logits = net(x)
        loss = loss_of(logits, y, cfg.arch, cfg.label_smoothing, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        # DDP averages the processes' gradients: each share's summed loss, weighted so that the
        # average is that of the global batch's over `divisor`
        (loss * (world.size / divisor)).backward()
        optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def begin_pass(epoch, seed):
        torch.manual_seed(seed)  # dropout's numbers; inside an epoch, the checkpoint's RNG state goes on
        if cfg.optimizer == "sdlm":
            estimate_hessian(model, optimizer, split, cfg, epoch, device)

    # Distortions: on a GPU, computed there; on the CPU, numpy's, made in a thread beside the step
    # (the loop makes those batches).
    augment = augmenter(cfg.augment)
    if augment and device.type == "cuda":
        batches = on_device(split, device, DeviceAugmenter(augment, device))
    else:
        batches = None if augment else on_device(split, device)
    return Steps(
        train=CapturedStep(train, model, optimizer, cfg.batch_size) if captured else train,
        evaluate=functools.partial(evaluate, model, batch_size=cfg.batch_size, arch=cfg.arch, device=device),
        save=functools.partial(save_checkpoint, model=model, optimizer=optimizer),
        begin_pass=begin_pass,
        batches=batches,
    )


# Evaluation batches on a GPU: a split of MNIST's size at once, in a few launches. (On the CPU, a
# larger batch is no faster, and would change the logits' last bits.)
GPU_EVAL_BATCH = 10_000


@torch.no_grad()
def evaluate(model, split, batch_size, arch, device):
    """(mean loss, accuracy, logits) over a split, in order, without training behaviour: uploaded in
    one copy, its sums read once."""
    model.eval()
    xs, ys = torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device)
    step = max(batch_size, GPU_EVAL_BATCH) if device.type == "cuda" else batch_size
    losses, correct, outputs = [], 0, []
    for start in range(0, len(ys), step):
        x, y = xs[start : start + step], ys[start : start + step]
        logits = model(x)
        losses.append(loss_of(logits, y, arch, reduction="sum"))
        correct += (logits.argmax(1) == y).sum()
        outputs.append(logits)
    loss_sum = sum(torch.stack(losses).tolist())  # summed as Python floats, batch by batch
    return loss_sum / len(split), int(correct) / len(split), torch.cat(outputs).cpu().numpy()


# The optimizer's settings that say how it steps, not where it is: a checkpoint's are replaced by this run's.
STEPPING = ("capturable", "fused", "foreach")


def save_checkpoint(stem, model, optimizer):
    """Write what --resume needs; returns the file names (the run commits them)."""
    path = stem.with_suffix(".pt")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    device = next(model.parameters()).device
    if device.type == "cuda":  # dropout's generator there, inside an epoch
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    torch.save(state, path)
    return [path.name]


def load_checkpoint(paths, model, optimizer):
    """Restore model, optimizer and RNG from a checkpoint's files (Run.load_checkpoint)."""
    state = torch.load(paths[0], map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    stepping = [{key: group[key] for key in STEPPING if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, how in zip(optimizer.param_groups, stepping):
        group.update(how)  # the checkpoint's state, stepped as this run steps (eager or captured, on its device)
    torch.set_rng_state(state["torch_rng"])
    device = next(model.parameters()).device
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def save_model(folder, name, model):
    """The trained model, for build(...).load_state_dict(torch.load(...))."""
    torch.save(model.state_dict(), folder / name)


def train(cfg):
    """Train, test and save one run as `cfg` says; returns its result (result.json)."""
    threads = set_threads(cfg.threads, cfg.batch_size)
    device = select_device(cfg.device)
    world = join_world(cfg, device)
    world.check(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)  # same seed, same metrics
    data = splits_of(cfg, channels_last=False)
    model = build(cfg.arch, len(data.classes), cfg.pooling, cfg.activation, cfg.dropout, cfg.init).to(device)
    optimizer = make_optimizer(cfg, model)
    run = Run(cfg, world, functools.partial(all_sum, device=device))
    load = functools.partial(load_checkpoint, model=model, optimizer=optimizer)
    start = run.load_checkpoint(load) if cfg.resume else 0
    run.start(data.classes)
    # DDP all-reduces the gradients in backward; evaluation and the files use the model itself
    net = DistributedDataParallel(model, gradient_as_bucket_view=True) if world.size > 1 else model

    run.say_start(
        f"PyTorch {torch.__version__} on {device} ({threads} threads{world.describe()})", num_params(model), data
    )
    eager = eager_reason(cfg, device, world)
    if eager:
        run.say(eager)
    steps = make_steps(
        model, net, optimizer, data.train, cfg, device, world, captured=device.type == "cuda" and not eager
    )
    # Ctrl-C, SIGTERM, a full disk, a diverging loss, a lost process: one line, the last checkpoint kept
    with run.stopping(), peers_lost():
        test_loss, test_acc, test_logits = fit(run, data, steps, start)
        save = functools.partial(save_model, model=model)
        run.save_final(save, to_neutral(model), data.test.y, test_logits)  # model.npz: lenet5.convert, ONNX
        return run.finish(test_loss, test_acc, num_params(model), torch.__version__, str(device))


def main(argv=None):
    return run_command(FRAMEWORK, train, argv, __doc__.split("\n\n")[0], dist.is_initialized)


if __name__ == "__main__":
    sys.exit(main())

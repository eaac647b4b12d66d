"""The training step captured as one CUDA graph and replayed (PyTorch's "whole network capture").

On a GPU, LeNet-5's step is a hundred small kernels, each launched by Python: the GPU waits for the
launches. Captured once, the forward, the backward and Adam's update (its learning rate a device
tensor) replay as one graph, without Python between the kernels. torch.compile's "reduce-overhead"
mode captures graphs too, but compiles first (16.5 s for this step on a 2-core CPU); by hand the
capture takes one step. python -m lenet5.bench --device gpu times both (docs/speed.md).

The graph has fixed shapes: the last, smaller batch of an epoch takes an eager step, on the same
parameters and optimizer state. Dropout's numbers come from the default CUDA generator, which the
graph advances at each replay, so torch.manual_seed reseeds it for the next epoch as it does eagerly.
"""

import os

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch's CUDA-graph recipe asks


def eager_reason(cfg, device, world):
    """Why this run's steps are not captured, as a line to print (None: they are, or the run is on the
    CPU, where eager steps are the fastest)."""
    if device.type != "cuda":
        return None
    if os.environ.get("LENET5_EAGER") == "1":
        return "eager steps on the GPU, as LENET5_EAGER=1 asks"
    if cfg.optimizer not in ("adam", "adamw"):
        return f"eager steps on the GPU: the captured step serves Adam and AdamW, not --optimizer {cfg.optimizer}"
    if world.size > 1:
        return "eager steps on the GPU: the captured step serves one process, not DistributedDataParallel"
    return None


class CapturedStep:
    """A training step, `step(x, y, lr, divisor)` (sets the optimizer's learning rate to `lr`, returns
    (summed loss, correct) as device tensors), replayed from a CUDA graph for whole batches of
    `batch_size` images, captured at the first."""

    def __init__(self, step, model, optimizer, batch_size):
        self.step, self.model, self.optimizer, self.batch_size = step, model, optimizer, batch_size
        self.graph = None

    def __call__(self, x, y, lr, divisor):
        if self.graph is None and len(y) == self.batch_size:
            self._capture(x, y, divisor)
        if self.graph is None or x.shape != self.x.shape or divisor != self.divisor:
            return self.step(x, y, self.lr.fill_(lr) if self.graph else lr, divisor)  # the last, smaller batch
        self.lr.fill_(lr)
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.hits  # the loop adds them to its sums before the next replay overwrites them

    def _capture(self, x, y, divisor):
        """Adam switched to its capturable form (its state and learning rate on the device, one fused
        kernel); a warm-up on a side stream, which leaves no trace (parameters, optimizer state and RNG
        are put back); then one step captured on static inputs."""
        self.lr = torch.zeros((), device=x.device)
        self.optimizer._warned_capturable_if_run_uncaptured = True  # the eager steps (warm-up, last batch) are meant
        for group in self.optimizer.param_groups:
            group.update(capturable=True, fused=True, foreach=None)
        for state in self.optimizer.state.values():  # from a checkpoint: the step count onto the device
            if "step" in state:
                state["step"] = state["step"].to(x.device, torch.float32)
        self.x = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
        self.y, self.divisor = torch.empty_like(y), divisor
        self.x.copy_(x)
        self.y.copy_(y)
        kept = self._state()
        saved = [tensor.clone() for tensor in kept]
        rng = torch.cuda.get_rng_state(x.device)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.step(self.x, self.y, self.lr, divisor)
        torch.cuda.current_stream(x.device).wait_stream(side)
        before = {id(tensor) for tensor in kept}
        with torch.no_grad():
            for tensor, value in zip(kept, saved):
                tensor.copy_(value)
            for tensor in self._state():
                if id(tensor) not in before:
                    tensor.zero_()  # Adam's state, made by the warm-up: as before a first step
        torch.cuda.set_rng_state(rng, x.device)
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates its own gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.hits = self.step(self.x, self.y, self.lr, divisor)

    def _state(self):
        """The tensors a step changes: the parameters and the optimizer's state."""
        state = [value for per_param in self.optimizer.state.values() for value in per_param.values()]
        return [*self.model.parameters(), *(value for value in state if torch.is_tensor(value))]

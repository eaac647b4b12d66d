"""How a run stops: Ctrl-C and SIGTERM raised as Interrupted where the process stands (in
training, noted and acted on at the end of the step), Stopped once a checkpoint is kept, a loss
that diverged, and the decorator that ends any command with one line on either signal. In a
data-parallel run (lenet5.training.distributed) the processes agree, at the steps where the loss is
checked, on the sums of their shares and on a signal that any of them received."""

import functools
import math
import signal
import sys
import threading
from contextlib import contextmanager

from .runfolder import RunError

# Ctrl-C, and what batch schedulers (SLURM, Kubernetes, systemd) send before they kill a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (`signum`), raised where the process stood, as Python raises KeyboardInterrupt."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame):
    """A signal handler: SIGTERM, too, unwinds the stack (files being written are removed)."""
    raise Interrupted(signum)


@contextmanager
def signals_raise():
    """Within the block, SIGINT and SIGTERM raise Interrupted (only in the main thread, where
    Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with handled_by(raise_interrupted):
        yield


@contextmanager
def handled_by(handler):
    """Within the block, SIGINT and SIGTERM go to `handler`; then to the handlers of before."""
    previous = [signal.signal(signum, handler) for signum in STOP_SIGNALS]
    try:
        yield
    finally:
        for signum, handler_before in zip(STOP_SIGNALS, previous):
            signal.signal(signum, handler_before)


class Stopped(Exception):
    """Ctrl-C or SIGTERM (`signum`) stopped the run at the end of a step, after a checkpoint; the
    message says what is kept."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


def stops_cleanly(prog):
    """Decorate a command's main(argv): Ctrl-C and SIGTERM stop it with one line and the status
    128 + the signal, after the files it was writing are removed (lenet5.files)."""

    def decorate(main):
        @functools.wraps(main)
        def guarded(argv=None):
            with signals_raise():
                try:
                    return main(argv)
                except Interrupted as stop:
                    print(f"\n{prog}: stopped by {stop}; nothing half-written is left", file=sys.stderr)
                    return 128 + stop.signum

        return guarded

    return decorate


class Agreement:
    """One run's stop signal and loss check, agreed among the processes of a data-parallel run:
    `world` is this process's place, `all_sum` the framework's sum of a list of numbers over the
    processes (needed when there are several)."""

    def __init__(self, world, all_sum=None):
        self.world, self._all_sum = world, all_sum
        self._signal = 0  # Ctrl-C or SIGTERM seen by this process
        self._agreed_signal = 0  # ... by any process, at the last agreement of a data-parallel run
        self._checked = 0  # the last step whose loss check_finite found finite

    @contextmanager
    def noting_signals(self):
        """Within the block, Ctrl-C or SIGTERM is noted, for the run to stop at the end of the step;
        the same signal again stops at once (a launcher that forwards SIGTERM after the terminal's
        Ctrl-C does not)."""

        def on_signal(signum, frame):
            if self._signal == signum:
                raise Interrupted(signum)
            self._signal = self._signal or signum

        with handled_by(on_signal):
            yield

    def stop_signal(self):
        """The signal to stop on: this process's own, or in a data-parallel run the one agreed on."""
        return self._signal if self.world.size == 1 else self._agreed_signal

    def sums(self, *values):
        """`values` summed over the processes of a data-parallel run, which agree on the way on
        whether any of them was signalled; as they are, in a run of one process."""
        if self.world.size == 1:
            return values
        signals = [self._signal == signal.SIGINT, self._signal == signal.SIGTERM]
        *totals, sigint, sigterm = self._all_sum([*values, *signals])
        self._agreed_signal = signal.SIGINT if sigint else signal.SIGTERM if sigterm else 0
        return totals

    def check_finite(self, loss_sum, epoch, step):
        """Stop if the running loss sum (of every process: sums() first) has turned NaN or
        infinite: some step since the last check diverged."""
        if not math.isfinite(loss_sum):
            steps = f"step {step}" if step - self._checked == 1 else f"steps {self._checked + 1}-{step}"
            raise RunError(f"the training loss became {loss_sum} in epoch {epoch}, {steps} (try a smaller --lr)")
        self._checked = step

    def checked_sums(self, epoch, step, loss_sum, *values):
        """(loss_sum, *values) summed over the processes (sums), the loss checked (check_finite)."""
        totals = self.sums(loss_sum, *values)
        self.check_finite(totals[0], epoch, step)
        return totals

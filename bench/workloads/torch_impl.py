"""PyTorch eager: autograd and torch.optim.Adam (default, and fused=True)."""

import torch
import torch.nn.functional as F

from . import BETA1, BETA2, EPS, LR, chain

NAME = "torch"
DEVICES = ("cpu", "gpu") if torch.cuda.is_available() else ("cpu",)
MEMORY_TRACEABLE = False


def versions():
    return {"torch": torch.__version__}


def configure(threads):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel work
        pass


def _device(device):
    return torch.device("cuda" if device == "gpu" else "cpu")


def synchronize(device):
    if device == "gpu":
        torch.cuda.synchronize()


class MLPStep:
    def __init__(self, params, x, y, device, fused):
        dev = _device(device)
        self.weights = [torch.tensor(p, device=dev, requires_grad=True) for p in params]
        self.x = torch.tensor(x, device=dev)
        self.y = torch.tensor(y, device=dev)
        self.opt = torch.optim.Adam(self.weights, lr=LR, betas=(BETA1, BETA2), eps=EPS, fused=fused)

    def __call__(self):
        w = self.weights
        h = self.x
        n_layers = len(w) // 2
        for i in range(n_layers):
            h = torch.addmm(w[2 * i + 1], h, w[2 * i])
            if i < n_layers - 1:
                h = F.relu(h)
        loss = F.cross_entropy(h, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def params(self):
        return [p.detach().cpu().numpy().copy() for p in self.weights]


def count_ops(step):
    """Top-level ATen ops in one call of step (those not called from inside another ATen op)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()

    def top_level(event):
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    return sum(1 for e in prof.events() if e.name.startswith("aten::") and top_level(e))


class Chain:
    def __init__(self, x0, n_ops, device):
        self.x = torch.tensor(x0, device=_device(device), requires_grad=True)
        self.n_ops = n_ops

    def __call__(self):
        loss = chain(self.x, self.n_ops, torch.tanh).sum()
        (g,) = torch.autograd.grad(loss, self.x)
        return g.cpu().numpy()


def _record(x0, device):
    x = torch.tensor(x0, device=_device(device), requires_grad=True)

    def record(n_ops):
        loss = chain(x, n_ops, torch.tanh).sum()
        return lambda: torch.autograd.grad(loss, x)

    return record


MLP = {
    "Adam default": lambda params, x, y, device: MLPStep(params, x, y, device, fused=None),
    "Adam fused=True": lambda params, x, y, device: MLPStep(params, x, y, device, fused=True),
}
TAPE = {"autograd": Chain}
RECORD = {"autograd": _record}


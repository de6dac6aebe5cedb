"""PyTorch: eager autograd with torch.optim.Adam (default, and fused=True), and torch.compile (inductor):
the loss function compiled (AOTAutograd compiles its backward too) and the optimizer step compiled, as
PyTorch's tutorials compile a training step."""

import torch
import torch.nn.functional as F

from . import BETA1, BETA2, EPS, ENC_HEADS, LN_EPS, LR, chain

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


def _mlp_loss(w, x, y):
    h = x
    n_layers = len(w) // 2
    for i in range(n_layers):
        h = torch.addmm(w[2 * i + 1], h, w[2 * i])
        if i < n_layers - 1:
            h = F.relu(h)
    return F.cross_entropy(h, y)


def _cnn_loss(w, x, y):
    k1, b1, k2, b2, wd, bd = w
    h = F.relu(F.conv2d(x, k1, b1))
    h = F.relu(F.conv2d(h, k2, b2))
    h = F.max_pool2d(h, 2)
    return F.cross_entropy(torch.addmm(bd, h.flatten(1), wd), y)


def _encoder_loss(w, x, y):
    g1, be1, w_qkv, b_qkv, w_o, b_o, g2, be2, w1, b1, w2, b2, w_head, b_head = w
    batch, seq, d = x.shape
    x = x.reshape(batch * seq, d)
    qkv = torch.addmm(b_qkv, F.layer_norm(x, (d,), g1, be1, LN_EPS), w_qkv)
    q, k, v = (t.reshape(batch, seq, ENC_HEADS, d // ENC_HEADS).transpose(1, 2) for t in qkv.split(d, dim=1))
    ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch * seq, d)
    h = x + torch.addmm(b_o, ctx, w_o)
    m = F.gelu(torch.addmm(b1, F.layer_norm(h, (d,), g2, be2, LN_EPS), w1))
    h = h + torch.addmm(b2, m, w2)
    return F.cross_entropy(torch.addmm(b_head, h.reshape(batch, seq, d).mean(1), w_head), y)


# The CNN in PyTorch's native NCHW layout: kernels (out, in, kh, kw), and the dense rows permuted from
# the NHWC flatten order of bench.workloads.init_cnn to NCHW's, so that the step computes the same function.
def _cnn_to_torch(params, x):
    k1, b1, k2, b2, wd, bd = params
    f2 = k2.shape[3]
    side = int(round((wd.shape[0] // f2) ** 0.5))
    wd = wd.reshape(side, side, f2, -1).transpose(2, 0, 1, 3).reshape(wd.shape)
    return [k1.transpose(3, 2, 0, 1), b1, k2.transpose(3, 2, 0, 1), b2, wd, bd], x.transpose(0, 3, 1, 2)


def _cnn_from_torch(params):
    k1, b1, k2, b2, wd, bd = params
    f2 = k2.shape[0]
    side = int(round((wd.shape[0] // f2) ** 0.5))
    wd = wd.reshape(f2, side, side, -1).transpose(1, 2, 0, 3).reshape(wd.shape)
    return [k1.transpose(2, 3, 1, 0), b1, k2.transpose(2, 3, 1, 0), b2, wd, bd]


class TrainStep:
    """loss_fn(weights, x, y) forward and backward, then Adam; compiled: torch.compile of the loss function
    and of the optimizer step."""

    def __init__(self, loss_fn, params, x, y, device, fused=None, compiled=False, to_torch=None, from_torch=None):
        dev = _device(device)
        if to_torch is not None:
            params, x = to_torch(params, x)
        self.from_torch = from_torch
        self.weights = [torch.tensor(p.copy(), device=dev, requires_grad=True) for p in params]
        self.x = torch.tensor(x.copy(), device=dev)
        self.y = torch.tensor(y, device=dev)
        self.opt = torch.optim.Adam(self.weights, lr=LR, betas=(BETA1, BETA2), eps=EPS, fused=fused)
        self.loss_fn = torch.compile(loss_fn) if compiled else loss_fn
        self.opt_step = torch.compile(self.opt.step) if compiled else self.opt.step

    def __call__(self):
        loss = self.loss_fn(self.weights, self.x, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt_step()
        return loss.item()

    def params(self):
        out = [p.detach().cpu().numpy().copy() for p in self.weights]
        return self.from_torch(out) if self.from_torch else out


def MLPStep(params, x, y, device, fused=None, compiled=False):
    return TrainStep(_mlp_loss, params, x, y, device, fused=fused, compiled=compiled)


def CNNStep(params, x, y, device, compiled=False):
    return TrainStep(_cnn_loss, params, x, y, device, compiled=compiled, to_torch=_cnn_to_torch,
                     from_torch=_cnn_from_torch)


def EncoderStep(params, x, y, device, compiled=False):
    return TrainStep(_encoder_loss, params, x, y, device, compiled=compiled)


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


def _chain_sum(x, n_ops):
    return chain(x, n_ops, torch.tanh).sum()


class Chain:
    def __init__(self, x0, n_ops, device, compiled=False):
        self.x = torch.tensor(x0, device=_device(device), requires_grad=True)
        self.n_ops = n_ops
        self.forward = torch.compile(_chain_sum) if compiled else _chain_sum

    def __call__(self):
        loss = self.forward(self.x, self.n_ops)
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
    "torch.compile": lambda params, x, y, device: MLPStep(params, x, y, device, compiled=True),
}
CNN = {
    "eager": lambda params, x, y, device: CNNStep(params, x, y, device),
    "torch.compile": lambda params, x, y, device: CNNStep(params, x, y, device, compiled=True),
}
ENCODER = {
    "eager": lambda params, x, y, device: EncoderStep(params, x, y, device),
    "torch.compile": lambda params, x, y, device: EncoderStep(params, x, y, device, compiled=True),
}
TAPE = {
    "autograd": Chain,
    "torch.compile": lambda x0, n_ops, device: Chain(x0, n_ops, device, compiled=True),
}
RECORD = {"autograd": _record}


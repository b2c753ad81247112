"""PyTorch eager twins of jaxcnn nets, for experiments.bench: the same layers, built from a jaxcnn net and its
params (so both sides compute the same function), NCHW inside as PyTorch users run it.

Conv -> nn.Conv2d, Dense -> nn.Linear, MaxPool -> nn.MaxPool2d, LRN -> nn.LocalResponseNorm, BatchNorm + Scale
-> nn.BatchNorm2d(affine=True), Local -> unfold + einsum (PyTorch has no locally-connected layer). Flatten
permutes to NHWC first, so a Dense layer's rows keep jaxcnn's (h, w, c) order.
"""
import numpy as np
import torch
from torch import nn

from jaxcnn import layers as L
from jaxcnn.datasets import CAFFE_PIXEL_SCALE
from jaxcnn.ops.geometry import dilated, resolve_padding


def _t(a):
    return torch.from_numpy(np.array(a, np.float32))


class Local(nn.Module):
    """Locally-connected layer: (N, C, H, W) -> (N, O, OH, OW); weight (OH*OW, C*KH*KW, O), bias (OH, OW, O) or (O,)."""

    def __init__(self, w, b, stride, padding):
        super().__init__()
        oh, ow, kh, kw, c, o = w.shape
        self.kernel, self.stride, self.padding, self.out_hw = (kh, kw), stride, padding, (oh, ow)
        self.weight = nn.Parameter(_t(np.transpose(w, (0, 1, 4, 2, 3, 5)).reshape(oh * ow, c * kh * kw, o)))
        self.bias = nn.Parameter(_t(b)) if b is not None else None

    def forward(self, x):
        cols = nn.functional.unfold(x, self.kernel, padding=self.padding, stride=self.stride)  # (N, C*KH*KW, OH*OW)
        y = torch.einsum("nkl,lko->nlo", cols, self.weight).unflatten(1, self.out_hw)
        if self.bias is not None:
            y = y + self.bias
        return y.permute(0, 3, 1, 2)


class NHWCFlatten(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


def padding(layer, in_shape):
    """A Conv, Local or pooling layer's padding on a (H, W, C) input as PyTorch's symmetric (pad_h, pad_w)."""
    window = dilated(layer.kernel, getattr(layer, "dilation", (1, 1)))
    (top, bottom), (left, right) = resolve_padding(layer.padding, in_shape[:2], window, layer.stride)
    if top != bottom or left != right:
        raise ValueError(f"{layer.name}: asymmetric padding has no nn twin")
    return top, left


def _module(layer, shape_row, params, skip):
    """The nn.Module for one jaxcnn layer (None: folded into the previous module)."""
    p, in_shape = params.get(layer.name, {}), shape_row.in_shape
    if isinstance(layer, L.Conv):
        m = nn.Conv2d(in_shape[-1], layer.features, layer.kernel, layer.stride, padding(layer, in_shape),
                      layer.dilation, layer.groups, bias=layer.bias)
        m.weight.data = _t(np.transpose(p["w"], (3, 2, 0, 1)))
        if layer.bias:
            m.bias.data = _t(p["b"])
        return m
    if isinstance(layer, L.Dense):
        m = nn.Linear(in_shape[0], layer.features, bias=layer.bias)
        m.weight.data = _t(np.transpose(p["w"]))
        if layer.bias:
            m.bias.data = _t(p["b"])
        return m
    if isinstance(layer, L.Local):
        return Local(np.asarray(p["w"]), p.get("b"), layer.stride, padding(layer, in_shape))
    if isinstance(layer, L.MaxPool):
        return nn.MaxPool2d(layer.kernel, layer.stride, padding(layer, in_shape), ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.LRN) and layer.region == "across":
        return nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
    if isinstance(layer, L.BatchNorm):
        return nn.BatchNorm2d(in_shape[-1], layer.eps, 1 - layer.momentum, affine=False)
    if isinstance(layer, L.Scale) and isinstance(skip, nn.BatchNorm2d) and layer.bias:
        skip.affine = True  # BatchNorm + Scale is BatchNorm2d(affine=True)
        skip.weight, skip.bias = nn.Parameter(_t(p["gamma"])), nn.Parameter(_t(p["beta"]))
        skip.jaxcnn = {"weight": (layer.name, "gamma"), "bias": (layer.name, "beta")}
        return None
    if isinstance(layer, L.ReLU):
        return nn.ReLU()
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, L.Flatten):
        return NHWCFlatten()
    raise ValueError(f"{layer.name}: no PyTorch twin for {type(layer).__name__}")


def twin(net, params, input_shape=None) -> nn.Sequential:
    """nn.Sequential computing what net.apply does with params; it takes NCHW input. Each module with
    parameters carries `jaxcnn`: {torch parameter name: (layer name, jaxcnn parameter name)}."""
    modules = []
    for row in net.shapes(input_shape):
        m = _module(row.layer, row, params, modules[-1] if modules else None)
        if m is not None:
            if row.layer.name in params:
                m.jaxcnn = {"weight": (row.layer.name, "w"), "bias": (row.layer.name, "b")}
            modules.append(m)
    return nn.Sequential(*modules)


def sgd(model, lr_mult, lr, momentum, weight_decay):
    """torch.optim.SGD matching jaxcnn's Caffe SGD: each parameter's learning rate is lr times its lr_mult
    (lr_mult: the pytree of Net.multipliers). Equal because PyTorch's momentum buffer then differs only by
    that constant factor."""
    groups = {}
    for module in model.modules():
        for attr, (layer, key) in getattr(module, "jaxcnn", {}).items():
            param = getattr(module, attr)
            if param is not None:
                groups.setdefault(lr_mult[layer][key], []).append(param)
    return torch.optim.SGD([{"params": ps, "lr": lr * m} for m, ps in groups.items()], lr=lr,
                           momentum=momentum, weight_decay=weight_decay)


def shift(x, gen, pad=2):
    """Each image of x (N, C, H, W) shifted by up to `pad` pixels: a random crop of the zero-padded image."""
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=gen, device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    images, channels = torch.arange(n, device=x.device), torch.arange(c, device=x.device)
    return padded[images[:, None, None, None], channels[:, None, None], rows, cols]


class Recipe:
    """experiments.mnist's recipe in a plain PyTorch loop: the twin of a jaxcnn net, SGD with Caffe's
    multipliers, momentum and weight decay, a per-step cosine schedule, random shifts of up to two pixels, uint8
    data on `device`; one epoch of training from the initial weights, then evaluation. prepare(module) gives what
    runs the model's forward (the module itself, or e.g. torch.compile of it)."""

    def __init__(self, net, params, train, test, *, batch_size, lr, momentum, weight_decay, lr_mult, device,
                 seed=0, prepare=lambda module: module):
        self.model = twin(net, params).to(device)
        self.forward = prepare(self.model)
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.opt = sgd(self.model, lr_mult, lr, momentum, weight_decay)
        self.images = torch.from_numpy(np.ascontiguousarray(np.asarray(train[0]).transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(np.asarray(train[1])).long().to(device)
        self.test = (torch.from_numpy(np.ascontiguousarray(np.asarray(test[0]).transpose(0, 3, 1, 2))).to(device),
                     torch.from_numpy(np.asarray(test[1])).long().to(device))
        self.batch_size, self.steps, self.device = batch_size, len(train[1]) // batch_size, device
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def epoch(self):
        """-> test accuracy (a tensor on the device) after one epoch from the initial weights."""
        self.model.load_state_dict(self.initial)
        self.opt.state.clear()
        base = [g["lr"] for g in self.opt.param_groups]
        self.model.train()
        perm = torch.randperm(len(self.labels), generator=self.gen, device=self.device)
        for i in range(self.steps):
            for g, lr in zip(self.opt.param_groups, base):
                g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * i / self.steps))
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            x = shift(self.images[idx].float() * CAFFE_PIXEL_SCALE, self.gen)
            self.opt.zero_grad()
            nn.functional.cross_entropy(self.forward(x), self.labels[idx]).backward()
            self.opt.step()
        for g, lr in zip(self.opt.param_groups, base):
            g["lr"] = lr
        self.model.eval()
        with torch.no_grad():
            correct = sum((self.forward(x.float() * CAFFE_PIXEL_SCALE).argmax(1) == y).sum()
                          for x, y in zip(self.test[0].split(1000), self.test[1].split(1000)))
        return correct / len(self.test[1])

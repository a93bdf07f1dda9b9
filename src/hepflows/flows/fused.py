"""A fused ReLU MLP for the CPU: the conditioner networks' forward and backward in one autograd node.

Almost all the arithmetic of a coupling flow is in its conditioners' matrix products, so on a CPU
the speed of training and sampling is decided by three things this module takes care of:

- **The orientation of narrow products.** A backward product whose output has only a few columns
  (the first layer's input gradient and weight gradient, with as many columns as kept features)
  runs several times slower in BLAS than the same product computed transposed, ``(B^T A^T)^T``,
  with the narrow side as the long-stride dimension. :func:`matmul` picks the fast orientation;
  the result is the same product, as a transposed view where that was faster. Forward products
  (:func:`affine`) keep the plain orientation: for the narrow last layer the transposed one saves
  under 1 % of a step on one thread, nothing on two, and MKL splits its inner sums between
  threads, which would make sampling depend on the thread count.
- **The work between the products.** Autograd of ``Linear, ReLU, Linear, ...`` allocates a new
  activation for every ReLU and a new gradient for every ReLU backward, and keeps a graph node for
  each layer. :class:`ReLUMLPFunction` applies ReLU in place, masks gradients in place, and keeps
  one node per network, saving the same tensors autograd would (the input and each hidden
  activation after its ReLU).
- **Fresh memory in the gradient-free passes.** Without autograd nothing outlives a call but its
  output, so the hidden activations of a tile are written into per-thread workspaces that are
  reused from call to call (:func:`relu_mlp`). Freshly allocated activations of a few MB are
  mapped anew by the allocator each time, and the page faults of that first touch cost about a
  quarter of the time of sampling on a 2-core machine.

All three are exact: the same products and sums, in the same precision; only BLAS's blocking (and
so the last bits of rounding) may differ. The backward pass is not itself differentiable
(``once_differentiable``); second derivatives of a flow are not needed anywhere in hepflows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import BackwardCFunction, FunctionCtx, once_differentiable

__all__ = ["NARROW", "WORKSPACE_ROWS", "matmul", "affine", "relu_mlp", "ReLUMLPFunction"]

#: Output widths below which (and below the row count) a product is computed transposed.
NARROW = 64

#: Largest batch whose hidden activations use the reusable workspaces (the CPU tile size).
WORKSPACE_ROWS = 2048

_workspaces = threading.local()


def workspace_buffer(slot: int, rows: int, width: int, like: Tensor) -> Tensor:
    """A reusable (rows, width) buffer of this thread, distinct for each ``slot``."""
    cache: dict = _workspaces.__dict__.setdefault("buffers", {})
    key = (slot, width, like.dtype, like.device)
    buffer = cache.get(key)
    if buffer is None or buffer.shape[0] < rows:
        buffer = torch.empty(max(rows, WORKSPACE_ROWS), width, dtype=like.dtype, device=like.device)
        cache[key] = buffer
    return buffer[:rows]


def _transposed_is_faster(rows: int, cols: int) -> bool:
    # BLAS kernels are tuned for wide outputs; a narrow output as the leading dimension of the
    # column-major call (what ``A @ B`` with few columns becomes) is the slow case
    return cols < NARROW and cols < rows


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-D ``a`` (m, k) and ``b`` (k, n), in the faster orientation for BLAS."""
    if _transposed_is_faster(a.shape[0], b.shape[1]):
        return torch.mm(b.t(), a.t()).t()
    return torch.mm(a, b)


def affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` (``torch.nn.functional.linear``), in the plain orientation whose
    sums do not depend on the thread count (see the module docstring)."""
    if bias is None:
        return torch.mm(x, weight.t())
    return torch.addmm(bias, x, weight.t())


def _relu_backward_(grad: Tensor, activation: Tensor) -> Tensor:
    """Zero ``grad`` where the ReLU output ``activation`` is 0, in place."""
    return torch.ops.aten.threshold_backward.grad_input(grad, activation, 0, grad_input=grad)


class ReLUMLPFunction(torch.autograd.Function):
    """``Linear, ReLU, ..., Linear`` as one autograd node; see the module docstring.

    ``forward(x, w0, b0, w1, b1, ...)`` with weights ``(out, in)`` and biases ``(out,)``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, *params: Tensor) -> Tensor:
        weights, biases = params[0::2], params[1::2]
        saved = [x]
        h = x
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = affine(h, w, b)
            if i < last:
                h = h.relu_()  # h is our own fresh product: safe to overwrite
                saved.append(h)
        ctx.save_for_backward(*saved, *weights)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: BackwardCFunction, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        layers = len(saved) // 2
        inputs, weights = saved[:layers], saved[layers:]
        needs = ctx.needs_input_grad
        grads: list[Tensor | None] = [None] * (2 * layers)
        g = grad
        for i in reversed(range(layers)):
            if needs[1 + 2 * i]:
                grads[2 * i] = matmul(g.t(), inputs[i])
            if needs[2 + 2 * i]:
                grads[2 * i + 1] = g.sum(dim=0)
            if i > 0:
                g = _relu_backward_(matmul(g, weights[i]), inputs[i])
            elif needs[0]:
                g = matmul(g, weights[0])
        return (g if needs[0] else None, *grads)


def relu_mlp(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """The ReLU MLP ``x -> Linear -> ReLU -> ... -> Linear`` with the fused path.

    Without autograd (sampling, evaluation under ``torch.no_grad``) the layers run directly, with
    ReLU in place; with autograd they run as one :class:`ReLUMLPFunction` node.
    """
    needs_graph = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in (*weights, *biases))
    )
    if needs_graph:
        params = [t for pair in zip(weights, biases) for t in pair]
        return ReLUMLPFunction.apply(x, *params)
    h = x
    last = len(weights) - 1
    reuse = x.shape[0] <= WORKSPACE_ROWS
    for i, (w, b) in enumerate(zip(weights, biases)):
        if i < last and reuse:
            # alternate two buffers: a layer never reads the one it writes
            h = torch.addmm(b, h, w.t(), out=workspace_buffer(i % 2, x.shape[0], w.shape[0], x))
        else:
            h = affine(h, w, b)  # the output leaves the call: fresh memory
        if i < last:
            h = h.relu_()
    return h

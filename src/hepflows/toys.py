"""The seed study's 2-D toy densities, a minimal training loop for them, and its comparison figure.

Toys return float32 arrays (n, 2) scaled to lie roughly within [-4, 4], reproducible from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

if TYPE_CHECKING:
    from hepflows.flows.base import DensityModel as Flow

__all__ = [
    "swiss_roll",
    "eight_gaussians",
    "checkerboard",
    "TOYS",
    "train_toy",
    "evaluate_toy",
    "plot_toy_comparison",
]

#: The plotting window of every toy, (lo, hi) on both axes.
TOY_RANGE = (-4.0, 4.0)


def swiss_roll(n: int, *, seed: int = 0) -> np.ndarray:
    """A noisy 2-D Swiss roll: the spiral ``t (cos t, sin t)``, t in [1.5 pi, 4.5 pi], scaled by 1/5."""
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + rng.normal(size=(n, 2))
    return (x / 5).astype(np.float32)


def eight_gaussians(n: int, *, seed: int = 0) -> np.ndarray:
    """Eight Gaussians (sigma 0.5) on a circle of radius 4, scaled by 1/sqrt(2)."""
    rng = np.random.default_rng(seed)
    angles = np.pi / 4 * rng.integers(0, 8, size=n)
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centers + 0.5 * rng.normal(size=(n, 2))
    return (x / np.sqrt(2)).astype(np.float32)


def checkerboard(n: int, *, seed: int = 0) -> np.ndarray:
    """Uniform on the black squares of a 4x4 checkerboard covering [-4, 4]^2."""
    rng = np.random.default_rng(seed)
    x1 = 4 * rng.random(n) - 2
    x2 = rng.random(n) - 2 * rng.integers(0, 2, size=n) + np.floor(x1) % 2
    return (2 * np.stack([x1, x2], axis=1)).astype(np.float32)


#: Toy name -> sampler ``f(n, *, seed) -> (n, 2) float32``.
TOYS: dict[str, Callable[..., np.ndarray]] = {
    "swiss_roll": swiss_roll,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}


def train_toy(
    flow: Flow,
    data: np.ndarray,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Fit ``flow`` to ``data`` (n, 2) by maximum likelihood with Adam; returns the loss per step.

    Minibatches are drawn with replacement from a generator seeded by ``seed``; gradients are
    clipped at norm 5. The flow is left in evaluation mode. For toys only: the pipeline's
    training lives in :mod:`hepflows.training`.
    """
    param = next(flow.parameters())
    x = torch.as_tensor(np.asarray(data), dtype=param.dtype, device=param.device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen).to(x.device)
        loss = -flow.log_prob(x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
    flow.eval()
    return losses


@torch.no_grad()
def evaluate_toy(
    flow: Flow, *, grid: int = 200, samples: int = 20000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Density of a trained 2-D flow on a ``grid x grid`` mesh of :data:`TOY_RANGE` and a sample.

    Returns ``{"density": (grid, grid) with [i, j] at (y_i, x_j), "samples": (samples, 2)}``.
    """
    flow.eval()
    param = next(flow.parameters())
    ticks = torch.linspace(*TOY_RANGE, grid, dtype=param.dtype, device=param.device)
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    density = torch.cat([flow.log_prob(chunk).exp() for chunk in pts.split(65536)]).view(grid, grid)
    gen = torch.Generator().manual_seed(seed)
    sample = flow.sample(samples, generator=gen)
    return {"density": density.cpu().numpy(), "samples": sample.cpu().numpy()}


def plot_toy_comparison(results: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """The seed study's toy figure: per toy a row of data, then per model its density and samples.

    Arguments:
        results: ``{toy: {"data": (n, 2) array, model_name: model_result, ...}}`` in display order;
            ``model_result`` is a trained flow (evaluated here with :func:`evaluate_toy`, no
            training) or the dict :func:`evaluate_toy` returns. Usually two models, an affine and a
            spline flow.
        path: output file; the suffix picks the format (``.png``, ``.pdf``).

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    toys = list(results)
    if not toys:
        raise ValueError("no toys to plot")
    models = [k for k in results[toys[0]] if k != "data"]
    columns = 1 + 2 * len(models)
    fig = Figure(figsize=(2.4 * columns, 2.4 * len(toys)), constrained_layout=True)
    axes = fig.subplots(len(toys), columns, squeeze=False)
    lo, hi = TOY_RANGE
    bins = np.linspace(lo, hi, 121)

    for row, toy in enumerate(toys):
        entry = results[toy]
        axes[row, 0].hist2d(*np.asarray(entry["data"]).T, bins=bins, cmap="viridis")
        axes[row, 0].set_ylabel(toy.replace("_", " "))
        for m, name in enumerate(models):
            res = entry[name]
            if isinstance(res, torch.nn.Module):
                res = evaluate_toy(cast("Flow", res))
            ax_d, ax_s = axes[row, 1 + 2 * m], axes[row, 2 + 2 * m]
            ax_d.imshow(
                res["density"],
                origin="lower",
                extent=(lo, hi, lo, hi),
                cmap="viridis",
                aspect="auto",
            )
            ax_s.hist2d(*np.asarray(res["samples"]).T, bins=bins, cmap="viridis")
            if row == 0:
                ax_d.set_title(f"{name}: density")
                ax_s.set_title(f"{name}: samples")
    axes[0, 0].set_title("data")
    for ax in axes.flat:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xticks([])
        ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


#: The two flows of the toy figure: an affine (RealNVP) and a rational-quadratic spline flow.
TOY_MODELS: dict[str, dict[str, Any]] = {
    "RealNVP": {"coupling": "affine", "blocks": 4, "hidden": [32, 32], "norm": "none"},
    "RQ-NSF": {"coupling": "rq_spline", "blocks": 2, "hidden": [32, 32], "norm": "none"},
}


def make_toy_figure(
    out_base: str | Path,
    *,
    events: int = 4000,
    steps: int = 300,
    grid: int = 80,
    samples: int = 4000,
    seed: int = 0,
) -> tuple[Path, Path]:
    """The seed study's Figure 7: every toy, learned by each of :data:`TOY_MODELS`.

    Small by default (seconds per flow on a CPU); the seed's figure used far longer training.
    Writes ``out_base``.png and .pdf atomically; returns both paths.
    """
    from hepflows.atomic import atomic_path
    from hepflows.flows import build_flow

    results: dict[str, dict[str, Any]] = {}
    for t, (name, toy) in enumerate(TOYS.items()):
        data = toy(events, seed=seed + t)
        results[name] = {"data": data}
        for m, (model, spec) in enumerate(TOY_MODELS.items()):
            torch.manual_seed(seed + 10 * t + m)
            flow = build_flow(spec, 2)
            train_toy(flow, data, steps=steps, batch_size=256, lr=3e-3, seed=seed + t)
            results[name][model] = evaluate_toy(flow, grid=grid, samples=samples, seed=seed)
    out_base = Path(out_base)
    out = []
    for ext in ("png", "pdf"):
        path = out_base.with_name(f"{out_base.name}.{ext}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            written = plot_toy_comparison(results, Path(str(tmp) + f".{ext}"))
            Path(written).replace(tmp)
        out.append(path)
    return out[0], out[1]

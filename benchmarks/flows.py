"""Fidelity of each flow family: test NLL on the three 2-D toys and on the 18 continuous HIGGS features.

Every family is trained with the same blocks, conditioner widths, optimiser and steps, so the table
compares the layers, not the budgets. HIGGS events are preprocessed as in the pipeline (min-max on
a range widened by a margin, logit, standardisation; fitted on the training split) and modelled
conditionally on the label; their NLL is in nats per event in the preprocessed space (the same
Jacobian offset for every model, so differences are comparable). The HIGGS subset is small
(about 13k training events), so large models overfit it: the table compares families at one
budget, it does not rank them at convergence.

    python benchmarks/flows.py --quick
    python benchmarks/flows.py --steps 3000 --blocks 8 --hidden 256 256
"""

from __future__ import annotations

import argparse
import gzip
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hepflows.flows import build_flow  # noqa: E402
from hepflows.toys import TOYS  # noqa: E402

HIGGS_CSV = Path("/work/shared/data/higgs/higgs_real_subset.csv.gz")
# column order of the HIGGS CSV after the label
HIGGS_COLUMNS = (
    ["lepton_pt", "lepton_eta", "lepton_phi", "met", "met_phi"]
    + [f"jet{j}_{q}" for j in range(1, 5) for q in ("pt", "eta", "phi", "btag")]
    + ["m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb"]
)
CONTINUOUS = [c for c in HIGGS_COLUMNS if not c.endswith(("_phi", "_btag"))]

MODELS: dict[str, dict] = {
    "RealNVP (affine)": {"coupling": "affine"},
    "RealNVP (affine), GMM base": {"coupling": "affine", "base": "gmm"},
    "NICE (additive)": {"coupling": "additive"},
    "piecewise-quadratic coupling": {"coupling": "quadratic"},
    "RQ-NSF coupling": {"coupling": "rq_spline"},
    "RQ-NSF autoregressive": {"coupling": "rq_autoregressive"},
}


def load_higgs(path: Path, seed: int, test_fraction: float = 0.2, margin: float = 0.01):
    """Train/test arrays (features float32, labels float32 (n, 1)) of the 18 continuous features."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 29:
        raise ValueError(f"{path}: expected 29 columns, got {raw.shape}")
    label = raw[:, :1]
    cols = [1 + HIGGS_COLUMNS.index(c) for c in CONTINUOUS]
    x = raw[:, cols]
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]

    # the range is a property of the features (as the pipeline fits it on the whole input file),
    # not a fitted density parameter: taken over all events, so that no test event falls outside
    # it and lands at an arbitrary clipped logit; mean and std are fitted on the training split
    lo, hi = x.min(0), x.max(0)
    width = hi - lo
    lo, hi = lo - margin * width, hi + margin * width

    def logit(v: np.ndarray) -> np.ndarray:
        u = (v - lo) / (hi - lo)
        return np.log(u) - np.log1p(-u)

    lx = logit(x[train])
    mean, std = lx.mean(0), lx.std(0)
    prep = lambda v: ((logit(v) - mean) / std).astype(np.float32)  # noqa: E731
    return (prep(x[train]), label[train].astype(np.float32)), (
        prep(x[test]),
        label[test].astype(np.float32),
    )


def datasets(args) -> dict[str, tuple]:
    out = {}
    for name in args.datasets:
        if name == "higgs":
            if not args.higgs.exists():
                print(f"note: {args.higgs} not found, skipping HIGGS", file=sys.stderr)
                continue
            out["HIGGS 18"] = load_higgs(args.higgs, args.seed)
        else:
            toy = TOYS[name]
            out[name] = (
                (toy(args.train_size, seed=args.seed), None),
                (toy(args.test_size, seed=args.seed + 1), None),
            )
    return out


def train_and_test(model: dict, train, test, args) -> tuple[float, float, float, int]:
    """Train one flow; return (mean and median test NLL, ms per training step, parameter count)."""
    (x, c), (xt, ct) = train, test
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    block = {
        "blocks": args.blocks,
        "hidden": list(args.hidden),
        "permutation": args.permutation,
        "norm": args.norm,
        **model,
    }
    flow = build_flow(block, x.shape[1], 0 if c is None else c.shape[1]).to(device)
    x = torch.as_tensor(x, device=device)
    c = None if c is None else torch.as_tensor(c, device=device)
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    flow.train()
    start = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch_size,), generator=gen).to(device)
        loss = -flow.log_prob(x[idx], None if c is None else c[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = 1e3 * (time.perf_counter() - start) / max(args.steps, 1)

    flow.eval()
    xt = torch.as_tensor(xt, device=device)
    ct = None if ct is None else torch.as_tensor(ct, device=device)
    with torch.no_grad():
        lp = torch.cat(
            [
                flow.log_prob(xt[i : i + 8192], None if ct is None else ct[i : i + 8192])
                for i in range(0, len(xt), 8192)
            ]
        )
    return -lp.mean().item(), -lp.median().item(), ms, sum(p.numel() for p in flow.parameters())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per model (default 2000, --quick 300)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small models and data: a smoke run of a few minutes on one core",
    )
    p.add_argument("--blocks", type=int, default=None, help="flow blocks (default 8, --quick 4)")
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="conditioner widths (default 128 128, --quick 64 64)",
    )
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--permutation", default="lu", choices=["reverse", "random", "lu", "none"])
    p.add_argument("--norm", default="batchnorm", choices=["batchnorm", "actnorm", "none"])
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="toy training events (default 50000, --quick 10000)",
    )
    p.add_argument("--test-size", type=int, default=20000, help="toy test events")
    p.add_argument("--datasets", nargs="+", default=[*TOYS, "higgs"], choices=[*TOYS, "higgs"])
    p.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL"
    )
    p.add_argument("--higgs", type=Path, default=HIGGS_CSV)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    quick = args.quick
    args.steps = args.steps if args.steps is not None else (300 if quick else 2000)
    args.blocks = args.blocks if args.blocks is not None else (4 if quick else 8)
    args.hidden = args.hidden if args.hidden is not None else ([64, 64] if quick else [128, 128])
    args.train_size = (
        args.train_size if args.train_size is not None else (10000 if quick else 50000)
    )
    torch.set_num_threads(args.threads)

    data = datasets(args)
    print(
        f"# flow families, test NLL [nats/event], lower is better\n"
        f"steps={args.steps} batch={args.batch_size} lr={args.lr} (cosine) blocks={args.blocks} "
        f"hidden={args.hidden} permutation={args.permutation} norm={args.norm} seed={args.seed} "
        f"device={args.device} threads={args.threads}\n"
        + ", ".join(f"{k}: {len(v[0][0])} train / {len(v[1][0])} test" for k, v in data.items())
        + "\n",
        flush=True,
    )
    means, medians, times, params = {}, {}, {}, {}
    for name in args.models:
        for dname, (train, test) in data.items():
            mean, median, ms, params[name] = train_and_test(MODELS[name], train, test, args)
            means[name, dname], medians[name, dname], times[name, dname] = mean, median, ms
            print(
                f"  {name:30s} {dname:16s} NLL mean {mean:9.3f} median {median:8.3f} {ms:6.1f} ms/step",
                file=sys.stderr,
                flush=True,
            )

    def table(title: str, values: dict, fmt: str, extra: bool = False) -> None:
        print(f"\n{title}\n")
        header = ["model", *data] + ([f"params ({list(data)[-1]})"] if extra else [])
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for name in args.models:
            cells = [
                format(values[name, d], fmt) if math.isfinite(values[name, d]) else "nan"
                for d in data
            ]
            print(
                "| " + " | ".join([name, *cells] + ([f"{params[name]:,}"] if extra else [])) + " |"
            )

    table("Test NLL, mean [nats/event]", means, ".3f", extra=True)
    table("Test NLL, median [nats/event] (robust to the few extreme test events)", medians, ".3f")
    table("Training time [ms/step]", times, ".1f")


if __name__ == "__main__":
    main()

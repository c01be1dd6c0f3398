"""Training speed: jaxgap's jitted EDM training step against an equivalent PyTorch loop.

Workload: the default ``jaxgap train`` configuration (``TrainConfig()``) on digits (d = 64,
8x8x1 images, 1497 training examples), batch 128, float32, for the default MLP (width 256,
depth 4) and the default UNet (channels (32, 64)). The jax step is ``jaxgap.train.make_step``
itself (epoch-wise permuted batch, EDM loss with log-normal sigma, AdamW with linear
warm-up, EMA, running loss sum), built from ``init_state`` and ``make_step`` exactly as
``train_and_evaluate`` builds it.

The torch peer is the same network written in ``torch.nn`` (same layers, widths, LayerNorm /
GroupNorm with eps 1e-6, SiLU, Fourier noise embedding, EDM preconditioning, zero-initialized
output layer), started from the jax weights (copied), trained by the same loop: a
``torch.randperm`` per epoch, log-normal sigmas, the EDM-weighted loss, ``torch.optim.AdamW``
(same lr, betas, eps, weight decay) with a ``LambdaLR`` linear warm-up, and an EMA by
``lerp_`` under ``torch.no_grad``; float32, ``torch.set_num_threads(os.cpu_count())``. The
script checks that both have the same parameter count and tensor names, and that the
forward passes agree (weights copied, output layer set to random values) before timing.

Timing: steady state, compilation and warm-up steps excluded, the median over repeats of a
chunk of consecutive steps (jax: ``block_until_ready`` on the returned state), the jax and
torch chunks alternating so that a change of machine load hits both alike. Reported:
steps/s, the jax/torch speed ratio, the first step apart (``first_step_s``: for jax the
tracing and XLA compilation), and GFLOP/s with the step's FLOPs from XLA's cost analysis of
the lowered program, against a plain float32 matmul of about equal FLOPs measured in this
process (the ceiling). Every chunk's time is in the JSON (``chunk_seconds``): torch's OpenMP
threads slow down sharply (10x and more) while other processes take the cores; the median
holds while most chunks are spared.

Usage: python benchmarks/train_speed.py [--quick]
Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from _common import environment, median_time, print_table, write_json  # noqa: E402

from jaxgap.nets import param_count  # noqa: E402
from jaxgap.train import TrainConfig, build_model, init_state, load_data, make_step  # noqa: E402

try:  # torch is only a peer to compare against; jaxgap never depends on it
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

NORM_EPS = 1e-6  # flax nnx.LayerNorm / nnx.GroupNorm default epsilon


# ---------------------------------------------------------------------------------------
# jax: the real training step of `jaxgap train`
# ---------------------------------------------------------------------------------------

def jax_setup(config: TrainConfig):
    """Model, initial state and step function exactly as ``train_and_evaluate`` builds them."""
    ds = load_data(config)
    graphdef, tx, state = init_state(config, ds.dim, ds.image_shape)
    model = nnx.merge(graphdef, state["params"])
    batch = min(config.batch_size, ds.num_train)
    step = make_step(graphdef, tx, config, jnp.asarray(ds.train), batch)
    return ds, model, state, step, batch


def step_flops(step, state) -> float | None:
    """FLOPs of one step from XLA's cost analysis of the lowered program (no compilation);
    None where the backend gives none."""
    try:
        cost = jax.jit(step).lower(state).cost_analysis()
    except Exception:  # pragma: no cover - backend dependent
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def matmul_ceiling(flops: float, repeats: int) -> tuple[float, int]:
    """GFLOP/s of a square float32 matmul with about ``flops`` FLOPs (2 m^3), and m."""
    m = int(min(max(round((flops / 2) ** (1 / 3)), 64), 4096))
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, m)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((m, m)), jnp.float32)
    t = median_time(jax.jit(jnp.matmul), a, b, repeats=max(repeats, 5), warmup=2)
    return 2 * m**3 / t / 1e9, m


def jax_runner(step, state, chunk: int):
    """(compile + first step seconds, ``run()`` doing ``chunk`` steps, ``state()``)."""
    t0 = time.perf_counter()
    state, _ = step(state)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    box = [state]

    def run():
        s = box[0]
        for _ in range(chunk):
            s, _ = step(s)
        box[0] = s
        return s

    return first, run, lambda: box[0]


def interleaved_times(runs: list, repeats: int, warmup: int) -> list[list[float]]:
    """Wall times of ``repeats`` calls of each of ``runs``, the runs alternating (so a change
    of machine load hits all alike), after ``warmup`` untimed calls of each."""
    for run in runs:
        for _ in range(warmup):
            jax.block_until_ready(run())
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, ts in zip(runs, times, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(run())
            ts.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------
# torch: the same networks and the same loop
# ---------------------------------------------------------------------------------------

if torch is not None:

    class TorchNoiseEmbedding(nn.Module):
        """Fourier features at log-spaced frequencies 1..max_freq, then SiLU(Linear) x 2."""

        def __init__(self, emb_dim: int = 64, max_freq: float = 100.0):
            super().__init__()
            m = emb_dim // 2
            freqs = max_freq ** (np.arange(m) / max(m - 1, 1))
            self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32),
                                 persistent=False)
            self.linear0 = nn.Linear(emb_dim, emb_dim)
            self.linear1 = nn.Linear(emb_dim, emb_dim)

        def forward(self, c_noise):
            angles = c_noise[:, None] * self.freqs[None, :]
            features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
            return F.silu(self.linear1(F.silu(self.linear0(features))))

    class TorchMLPBlock(nn.Module):
        def __init__(self, width: int, emb_dim: int):
            super().__init__()
            self.norm = nn.LayerNorm(width, eps=NORM_EPS)
            self.linear0 = nn.Linear(width, width)
            self.emb_proj = nn.Linear(emb_dim, width)
            self.linear1 = nn.Linear(width, width)

        def forward(self, h, emb):
            y = self.linear0(F.silu(self.norm(h)))
            y = F.silu(y + self.emb_proj(emb))
            return h + self.linear1(y)

    class TorchMLP(nn.Module):
        """``jaxgap.nets.MLP`` in torch.nn."""

        def __init__(self, dim: int, width: int = 256, depth: int = 4, emb_dim: int = 64):
            super().__init__()
            self.embed = TorchNoiseEmbedding(emb_dim)
            self.linear_in = nn.Linear(dim, width)
            self.blocks = nn.ModuleList([TorchMLPBlock(width, emb_dim) for _ in range(depth)])
            self.norm_out = nn.LayerNorm(width, eps=NORM_EPS)
            self.linear_out = nn.Linear(width, dim)
            nn.init.zeros_(self.linear_out.weight)
            nn.init.zeros_(self.linear_out.bias)

        def forward(self, x_in, c_noise):
            emb = self.embed(c_noise)
            h = self.linear_in(x_in)
            for block in self.blocks:
                h = block(h, emb)
            return self.linear_out(F.silu(self.norm_out(h)))

    class TorchResBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, emb_dim: int):
            super().__init__()
            self.norm = nn.GroupNorm(math.gcd(c_in, 8), c_in, eps=NORM_EPS)
            self.emb_proj = nn.Linear(emb_dim, c_in)
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
            self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

        def forward(self, x, emb):
            h = F.silu(self.norm(x) + self.emb_proj(emb)[:, :, None, None])
            h = self.conv(h)
            return (x if self.skip is None else self.skip(x)) + h

    class TorchUpsample(nn.Module):
        def __init__(self, c_in: int, c_out: int):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

        def forward(self, x):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class TorchUNet(nn.Module):
        """``jaxgap.nets.UNet`` in torch.nn (NCHW inside; flat HWC input and output)."""

        def __init__(self, image_shape, channels=(32, 64), blocks_per_level: int = 1,
                     emb_dim: int = 64):
            super().__init__()
            self.image_shape = tuple(image_shape)
            c_img = self.image_shape[2]
            self.dim = math.prod(self.image_shape)
            self.embed = TorchNoiseEmbedding(emb_dim)
            self.conv_in = nn.Conv2d(c_img, channels[0], 3, padding=1)
            c = channels[0]
            down = []
            for c_level in channels:
                level = []
                for _ in range(blocks_per_level):
                    level.append(TorchResBlock(c, c_level, emb_dim))
                    c = c_level
                down.append(nn.ModuleList(level))
            self.down = nn.ModuleList(down)
            self.mid = TorchResBlock(c, c, emb_dim)
            ups, up = [], []
            for c_level in reversed(channels[:-1]):
                ups.append(TorchUpsample(c, c_level))
                up.append(nn.ModuleList([
                    TorchResBlock(2 * c_level if b == 0 else c_level, c_level, emb_dim)
                    for b in range(blocks_per_level)]))
                c = c_level
            self.upsample = nn.ModuleList(ups)
            self.up = nn.ModuleList(up)
            self.norm_out = nn.GroupNorm(math.gcd(c, 8), c, eps=NORM_EPS)
            self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

        def forward(self, x_in, c_noise):
            n = x_in.shape[0]
            emb = self.embed(c_noise)
            h = self.conv_in(x_in.reshape(n, *self.image_shape).permute(0, 3, 1, 2))
            skips = []
            for i, level in enumerate(self.down):
                for block in level:
                    h = block(h, emb)
                if i < len(self.down) - 1:
                    skips.append(h)
                    h = F.avg_pool2d(h, 2)
            h = self.mid(h, emb)
            for upsample, level in zip(self.upsample, self.up, strict=True):
                h = torch.cat([upsample(h), skips.pop()], dim=1)
                for block in level:
                    h = block(h, emb)
            h = self.conv_out(F.silu(self.norm_out(h)))
            return h.permute(0, 2, 3, 1).reshape(n, self.dim)

    class TorchEDMPrecond(nn.Module):
        """``D(x, sigma) = c_skip x + c_out F(c_in x, ln(sigma) / 4)`` (Karras et al. 2022)."""

        def __init__(self, net: nn.Module, sigma_data: float):
            super().__init__()
            self.net = net
            self.sigma_data = sigma_data

        def forward(self, x, sigma):
            sigma = sigma.reshape(-1, 1)
            sd = self.sigma_data
            norm = torch.sqrt(sigma * sigma + sd * sd)
            c_skip = (sd / norm) ** 2
            c_out = sigma * sd / norm
            c_in = 1.0 / norm
            c_noise = torch.log(sigma[:, 0]) / 4.0
            return c_skip * x + c_out * self.net(c_in * x, c_noise)


def torch_model(config: TrainConfig, dim: int, image_shape):
    if config.model == "unet":
        net = TorchUNet(image_shape, channels=tuple(config.channels))
    else:
        net = TorchMLP(dim, width=config.width, depth=config.depth)
    return TorchEDMPrecond(net, config.sigma_data)


def _flat(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def copy_jax_params(tmodel, params) -> None:
    """Load nnx parameters into the torch model (names must match one to one)."""
    tparams = dict(tmodel.named_parameters())
    seen = set()
    for path, value in _flat(nnx.to_pure_dict(params)):
        head, leaf = path.rsplit(".", 1)
        name = f"{head}.{'bias' if leaf == 'bias' else 'weight'}"
        v = np.asarray(value)
        if leaf == "kernel" and v.ndim == 2:
            v = v.T  # [in, out] -> [out, in]
        elif leaf == "kernel" and v.ndim == 4:
            v = v.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        if name not in tparams or tuple(tparams[name].shape) != v.shape:
            raise ValueError(f"torch model has no parameter {name} of shape {v.shape}")
        with torch.no_grad():
            tparams[name].copy_(torch.from_numpy(np.array(v, np.float32)))
        seen.add(name)
    if seen != set(tparams):
        raise ValueError(f"torch parameters without a jax twin: {sorted(set(tparams) - seen)}")


def forward_check(config: TrainConfig, ds, model) -> float:
    """Max |D_jax - D_torch| with identical weights, the zero output layer made random."""
    graphdef, params = nnx.split(model)
    pure = nnx.to_pure_dict(params)
    out = pure["net"]["linear_out" if config.model == "mlp" else "conv_out"]
    rng = np.random.default_rng(1)
    for k in out:
        out[k] = jnp.asarray(0.05 * rng.standard_normal(out[k].shape), jnp.float32)
    nnx.replace_by_pure_dict(params, pure)
    jmodel = nnx.merge(graphdef, params)
    tmodel = torch_model(config, ds.dim, ds.image_shape)
    copy_jax_params(tmodel, params)
    x = ds.train[:64]
    sigma = np.exp(rng.uniform(np.log(0.002), np.log(80.0), 64)).astype(np.float32)
    xs = (x + sigma[:, None] * rng.standard_normal(x.shape)).astype(np.float32)
    d_jax = np.asarray(jmodel(xs, sigma))
    with torch.no_grad():
        d_torch = tmodel(torch.from_numpy(xs), torch.from_numpy(sigma)).numpy()
    return float(np.max(np.abs(d_jax - d_torch)) / max(np.max(np.abs(d_jax)), 1e-30))


def torch_setup(config: TrainConfig, ds, params, batch: int):
    """The torch model (jax weights copied) and a ``run(k)`` doing k training steps."""
    tmodel = torch_model(config, ds.dim, ds.image_shape)
    copy_jax_params(tmodel, params)
    tparams = [p for p in tmodel.parameters()]
    ema = [p.detach().clone() for p in tparams]
    opt = torch.optim.AdamW(tparams, lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=config.weight_decay)
    warmup = max(config.warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / warmup, 1.0))
    train_x = torch.from_numpy(np.array(ds.train, np.float32))
    n = train_x.shape[0]
    per_epoch = n // batch
    gen = torch.Generator().manual_seed(config.seed)
    box = {"step": 0, "perm": None, "loss_sum": torch.zeros(()), "loss_count": 0}
    sd = config.sigma_data

    def one_step():
        t = box["step"]
        pos = t % per_epoch
        if pos == 0:
            box["perm"] = torch.randperm(n, generator=gen)
        x0 = train_x[box["perm"][pos * batch:(pos + 1) * batch]]
        sigma = torch.exp(config.p_mean + config.p_std * torch.randn(batch, generator=gen))
        eps = torch.randn(x0.shape, generator=gen)
        out = tmodel(x0 + sigma[:, None] * eps, sigma)
        weight = 1.0 / sigma**2 + 1.0 / sd**2
        loss = torch.mean(weight * torch.mean((out - x0) ** 2, dim=-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        decay = min(config.ema, (1.0 + t) / (10.0 + t))
        with torch.no_grad():
            for e, p in zip(ema, tparams, strict=True):
                e.lerp_(p, 1.0 - decay)  # decay * e + (1 - decay) * p
        box["loss_sum"] += loss.detach()
        box["loss_count"] += 1
        box["step"] = t + 1

    return tmodel, one_step, box


def torch_runner(one_step, chunk: int):
    """(first step seconds, ``run()`` doing ``chunk`` steps)."""
    t0 = time.perf_counter()
    one_step()
    first = time.perf_counter() - t0

    def run():
        for _ in range(chunk):
            one_step()

    return first, run


# ---------------------------------------------------------------------------------------

def bench_model(name: str, chunk: int, repeats: int, warmup_steps: int) -> tuple[list, dict]:
    config = TrainConfig(model=name).validate()
    ds, model, state, step, batch = jax_setup(config)
    n_jax = param_count(model)
    first, run, jax_state = jax_runner(step, state, chunk)  # first: trace + compile + run
    info = {"model": name, "params_jax": n_jax, "batch": batch, "dim": ds.dim,
            "image_shape": list(ds.image_shape), "flops_per_step": step_flops(step, state)}
    firsts, runs = [first], [run]
    if torch is not None:
        info["forward_rel_diff"] = forward_check(config, ds, build_model(config, ds.dim,
                                                                          ds.image_shape))
        tmodel, one_step, box = torch_setup(config, ds, nnx.state(model, nnx.Param), batch)
        info["params_torch"] = sum(p.numel() for p in tmodel.parameters())
        first, run = torch_runner(one_step, chunk)
        firsts.append(first)
        runs.append(run)
    times = interleaved_times(runs, repeats, warmup=max(warmup_steps // chunk, 1))
    info["chunk_seconds"] = times
    info["mean_loss_jax"] = float(jax_state()["loss_sum"]) / int(jax_state()["loss_count"])
    impls = [f"jaxgap make_step (jax {jax.__version__})"]
    if torch is not None:
        info["mean_loss_torch"] = float(box["loss_sum"]) / box["loss_count"]
        impls.append(f"torch.nn eager ({torch.__version__})")
    rows = []
    for impl, n_params, first, ts in zip(impls, [n_jax, info.get("params_torch")], firsts,
                                         times, strict=False):
        t = float(np.median(ts)) / chunk
        rows.append({"model": name, "impl": impl, "params": n_params, "first_step_s": first,
                     "ms_per_step": 1e3 * t, "steps_per_s": 1 / t,
                     "best_ms_per_step": 1e3 * min(ts) / chunk})
        if info["flops_per_step"]:
            rows[-1]["gflops"] = info["flops_per_step"] / t / 1e9
    if len(rows) == 2:
        rows[0]["jax_over_torch"] = rows[0]["steps_per_s"] / rows[1]["steps_per_s"]
        rows[1]["jax_over_torch"] = 1.0
    return rows, info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    chunk, repeats, warmup_steps = (10, 3, 10) if args.quick else (50, 7, 100)
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    rows, infos = [], []
    for name in ("mlp", "unet"):
        r, info = bench_model(name, chunk, repeats, warmup_steps)
        rows += r
        infos.append(info)
    flops = [i["flops_per_step"] for i in infos if i["flops_per_step"]]
    ceiling = m = None
    if flops:
        ceiling, m = matmul_ceiling(float(np.median(flops)), repeats)
        for r in rows:
            if "gflops" in r:
                r["ratio_to_ceiling"] = r["gflops"] / ceiling
    env = environment()
    print(f"\nTraining step speed: digits (d = 64, 8x8x1), batch {infos[0]['batch']}, float32, "
          f"default TrainConfig ({env['device']}, {env['cpu_count']} CPUs); median of "
          f"{repeats} x {chunk} steps after {warmup_steps} warm-up steps")
    print_table(rows, ["model", "impl", "params", "first_step_s", "ms_per_step", "steps_per_s",
                       "jax_over_torch", "gflops", "ratio_to_ceiling"])
    if ceiling:
        print(f"ceiling: {m}x{m} float32 matmul (jax) at {ceiling:.1f} GFLOP/s; step FLOPs "
              "from XLA cost analysis: " + ", ".join(
                  f"{i['model']} {i['flops_per_step'] / 1e6:.0f} MFLOP" for i in infos
                  if i["flops_per_step"]))
    for i in infos:
        if "params_torch" in i:
            same = "match" if i["params_torch"] == i["params_jax"] else "DIFFER"
            print(f"{i['model']}: parameters jax {i['params_jax']:,} / torch "
                  f"{i['params_torch']:,} ({same}); forward max rel. diff with copied "
                  f"weights {i['forward_rel_diff']:.1e}; mean training loss over "
                  f"the run jax {i['mean_loss_jax']:.3f} / torch {i['mean_loss_torch']:.3f}")
        else:
            print(f"{i['model']}: parameters jax {i['params_jax']:,} (torch not importable)")
    bad = [i["model"] for i in infos if "params_torch" in i and
           (i["params_torch"] != i["params_jax"] or i["forward_rel_diff"] > 1e-4)]
    if bad:
        raise SystemExit(f"torch peer differs from the jax model for {bad}")
    path = write_json("train_speed", {
        "environment": env, "dtype": "float32", "quick": args.quick,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "timing": {"chunk_steps": chunk, "repeats": repeats, "warmup_steps": warmup_steps},
        "config": dataclasses.asdict(TrainConfig()),
        "ceiling_gflops": ceiling, "ceiling_matmul_m": m, "models": infos, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""The torch.nn peers of jaxgap's networks for ``train_speed.py`` (not part of the package).

Each peer is the same network as its jaxgap twin, written in ``torch.nn`` from the
architecture (not converted): the same layers and widths, LayerNorm / GroupNorm with eps
1e-6, SiLU, the Fourier noise embedding, EDM preconditioning, zero-initialized output
layers, and parameter names that match the jax ones (``net.blocks.0.qkv.weight`` for
``net/blocks/0/qkv/kernel``) so that :func:`copy_jax_params` loads the jax weights one to
one. Convolutions are NCHW inside (flat HWC images in and out, as jaxgap stores them);
attention is ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from flax import nnx
from torch import nn
from torch.nn import functional as F

NORM_EPS = 1e-6  # flax nnx.LayerNorm / nnx.GroupNorm default epsilon; the DiT's layer norm


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


# --- MLP -----------------------------------------------------------------------------------

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

    def __init__(self, dim: int, width: int, depth: int, emb_dim: int):
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


# --- U-Net ---------------------------------------------------------------------------------

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

    def __init__(self, image_shape, channels, blocks_per_level: int, emb_dim: int):
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


# --- DiT -----------------------------------------------------------------------------------

def sincos_1d(positions: np.ndarray, features: int) -> np.ndarray:
    """``[sin(w_k t), cos(w_k t)]_k`` with ``w_k = 10000^(-k/m)``, ``m = features // 2``,
    a zero column appended when ``features`` is odd (Vaswani et al. 2017)."""
    m = features // 2
    omega = 10000.0 ** (-np.arange(m) / max(m, 1))
    angles = np.outer(positions, omega)
    table = np.zeros((len(positions), features))
    table[:, :m], table[:, m:2 * m] = np.sin(angles), np.cos(angles)
    return table


def sincos_positions(grid: tuple[int, ...], width: int) -> np.ndarray:
    """Fixed positions ``[T, width]``: 1-D for a sequence; for a row-major 2-D grid the first
    ``width // 2`` features encode the row, the rest the column."""
    if len(grid) == 1:
        return sincos_1d(np.arange(grid[0], dtype=np.float64), width)
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    half = width // 2
    return np.concatenate([sincos_1d(rows.astype(np.float64), half),
                           sincos_1d(cols.astype(np.float64), width - half)], axis=1)


class TorchDiTBlock(nn.Module):
    """adaLN-Zero transformer block (Peebles and Xie 2023, Fig. 3)."""

    def __init__(self, width: int, heads: int, hidden: int, emb_dim: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.mlp_in = nn.Linear(width, hidden)
        self.mlp_out = nn.Linear(hidden, width)
        self.modulation = nn.Linear(emb_dim, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h, c):
        n, t, w = h.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None, :].chunk(
            6, dim=-1)
        y = F.layer_norm(h, (w,), eps=NORM_EPS) * (1 + scale1) + shift1
        q, k, v = self.qkv(y).reshape(n, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)  # [n, heads, t, w / heads]
        h = h + gate1 * self.attn_out(att.transpose(1, 2).reshape(n, t, w))
        y = F.layer_norm(h, (w,), eps=NORM_EPS) * (1 + scale2) + shift2
        return h + gate2 * self.mlp_out(F.gelu(self.mlp_in(y), approximate="tanh"))


class TorchDiT(nn.Module):
    """``jaxgap.nets.DiT`` in torch.nn: patchify, linear embedding + fixed sin-cos
    positions, adaLN-Zero blocks, adaLN final layer, unpatchify (flat HWC in and out)."""

    def __init__(self, dim: int, image_shape, width: int, depth: int, heads: int, patch: int,
                 hidden: int, emb_dim: int):
        super().__init__()
        self.dim, self.patch = dim, patch
        self.image_shape = None if image_shape is None else tuple(image_shape)
        if self.image_shape is None:
            self.grid, self.token_dim = (dim // patch,), patch
        else:
            height, wid, chans = self.image_shape
            self.grid, self.token_dim = (height // patch, wid // patch), patch * patch * chans
        self.tokens = math.prod(self.grid)
        self.register_buffer("pos", torch.tensor(sincos_positions(self.grid, width),
                                                 dtype=torch.float32), persistent=False)
        self.embed = TorchNoiseEmbedding(emb_dim)
        self.patch_embed = nn.Linear(self.token_dim, width)
        self.blocks = nn.ModuleList([TorchDiTBlock(width, heads, hidden, emb_dim)
                                     for _ in range(depth)])
        self.final_modulation = nn.Linear(emb_dim, 2 * width)
        self.linear_out = nn.Linear(width, self.token_dim)
        for layer in (self.final_modulation, self.linear_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x):
        n, p = x.shape[0], self.patch
        if self.image_shape is None:
            return x.reshape(n, self.tokens, p)
        (gh, gw), c = self.grid, self.image_shape[2]
        x = x.reshape(n, gh, p, gw, p, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, self.tokens, self.token_dim)

    def unpatchify(self, tokens):
        n, p = tokens.shape[0], self.patch
        if self.image_shape is None:
            return tokens.reshape(n, self.dim)
        (gh, gw), c = self.grid, self.image_shape[2]
        return tokens.reshape(n, gh, gw, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(n, self.dim)

    def forward(self, x_in, c_noise):
        c = F.silu(self.embed(c_noise))
        h = self.patch_embed(self.patchify(x_in)) + self.pos[None]
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c)[:, None, :].chunk(2, dim=-1)
        h = F.layer_norm(h, (h.shape[-1],), eps=NORM_EPS) * (1 + scale) + shift
        return self.unpatchify(self.linear_out(h))


# --- preconditioning, construction, weights ------------------------------------------------

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


def torch_peer(kind: str, model) -> TorchEDMPrecond:
    """The torch twin of a jaxgap denoiser ``model`` (built from its architecture: the
    structure is read off the jax module, the weights are not copied here)."""
    net = model.net
    emb = net.embed.emb_dim
    if kind == "mlp":
        peer = TorchMLP(net.dim, net.width, net.depth, emb)
    elif kind == "unet":
        peer = TorchUNet(net.image_shape, net.channels, net.blocks_per_level, emb)
    elif kind == "dit":
        hidden = net.blocks[0].mlp_in.out_features if net.depth else 1
        peer = TorchDiT(net.dim, net.image_shape, net.width, net.depth, net.heads, net.patch,
                        hidden, emb)
    else:
        raise ValueError(f"kind: expected 'mlp', 'unet' or 'dit', got {kind!r}")
    return TorchEDMPrecond(peer, float(model.sigma_data))


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


def forward_check(kind: str, model, x: np.ndarray, seed: int = 1) -> float:
    """Max ``|D_jax - D_torch| / max |D_jax|`` with identical weights, every parameter
    perturbed by ``0.05 N(0, 1)`` first (so the zero-initialized output layers and adaLN
    modulations are active), on ``x`` noised at log-uniform sigmas in [0.002, 80]."""
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(seed)
    pure = nnx.to_pure_dict(params)

    def perturb(tree):
        return {k: perturb(v) if isinstance(v, dict) else
                np.asarray(v) + np.float32(0.05) * rng.standard_normal(np.shape(v), np.float32)
                for k, v in tree.items()}

    nnx.replace_by_pure_dict(params, perturb(pure))
    jmodel = nnx.merge(graphdef, params)
    tmodel = torch_peer(kind, jmodel)
    copy_jax_params(tmodel, params)
    n = x.shape[0]
    sigma = np.exp(rng.uniform(np.log(0.002), np.log(80.0), n)).astype(np.float32)
    xs = (x + sigma[:, None] * rng.standard_normal(x.shape)).astype(np.float32)
    d_jax = np.asarray(jmodel(xs, sigma))
    with torch.no_grad():
        d_torch = tmodel(torch.from_numpy(xs), torch.from_numpy(sigma)).numpy()
    return float(np.max(np.abs(d_jax - d_torch)) / max(np.max(np.abs(d_jax)), 1e-30))

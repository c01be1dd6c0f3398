"""The empirical optimal denoiser of digits: train vs validation denoising loss.

Until the `jaxgap` command exists, `make demo` runs this: the closed-form optimal denoiser
of the 1497 training digits memorizes them, so its loss on noisy training images falls to
0 at small sigma while the loss on held-out digits does not: a generalization gap.
"""

import time

import jax
import jax.numpy as jnp

from jaxgap import EmpiricalDenoiser, data, noise


def loss(denoiser, x0, sigma, key):
    """Per-dimension MSE of one noisy draw per example: mean |D(x0 + s eps, s) - x0|^2 / d."""
    x = x0 + sigma * jax.random.normal(key, x0.shape)
    return jnp.mean((denoiser(x, sigma) - x0) ** 2)


def main():
    ds = data.load("digits")
    print(f"{ds.name}: {ds.num_train} train / {ds.num_val} val images, d = {ds.dim}")
    den = EmpiricalDenoiser(ds.train)
    key = jax.random.PRNGKey(0)
    k_train, k_val = jax.random.split(key)
    f = jax.jit(loss)
    train, val = jnp.asarray(ds.train), jnp.asarray(ds.val)
    t0 = time.perf_counter()
    print(f"{'sigma':>8}  {'train':>9}  {'val':>9}  {'gap':>9}")
    for sigma in noise.log_sigmas(8, 0.01, 10.0):
        lt = float(f(den, train, sigma, k_train))
        lv = float(f(den, val, sigma, k_val))
        print(f"{float(sigma):8.3f}  {lt:9.5f}  {lv:9.5f}  {lv - lt:9.5f}")
    print(f"({time.perf_counter() - t0:.1f} s on {jax.devices()[0].platform})")


if __name__ == "__main__":
    main()

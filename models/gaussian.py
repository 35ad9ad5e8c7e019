"""What every Gaussian path z_t = alpha_t x + sigma_t eps shares (docs/math.md §0, §1.1, §1.3).

A process that defines `alpha(t)`, `sigma(t)` and `x0_eps(pred, xt, t)` gets from this mixin the
log-SNR, the forward-SDE drift and diffusion, the score, the ancestral posterior and the prior,
so the SDE and ancestral samplers run on flow and diffusion models alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.models.common import expand, time_derivative


class GaussianPath:
    grid_power = 1.0  # samplers' default grid is uniform in t (models.protocols.Process)

    def log_snr(self, t):
        """lambda_t = log(alpha_t^2 / sigma_t^2)."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def d_alpha(self, t):
        return time_derivative(self.alpha, t)

    def d_sigma(self, t):
        return time_derivative(self.sigma, t)

    def drift_and_diffusion(self, xt, t):
        """f_t = alpha'/alpha and g_t^2 / 2 = sigma sigma' - f sigma^2 (docs/math.md §0, §2.3)."""
        tt = expand(t, xt)
        a, s = self.alpha(tt), self.sigma(tt)
        f = self.d_alpha(tt) / a
        return f, s * self.d_sigma(tt) - f * s**2

    def score(self, pred, xt, t):
        """grad log p_t(z) = -eps_hat / sigma_t (docs/math.md §0).

        Args:
            pred: the network's prediction [B, ...] (the data's shape). xt: z_t [B, ...].
            t: [B] or scalar times in [0, 1].

        Returns:
            the score [B, ...].
        """
        return -self.x0_eps(pred, xt, t)[1] / self.sigma(expand(t, xt))

    def prior(self, key, shape, t=1.0):
        """z_t ~ N(0, sigma_t^2 I): the marginal where alpha_t x is negligible (t near 1).

        Args:
            key: a PRNG key. shape: (B, ...) the batch. t: the prior's time (default 1).

        Returns:
            z [shape] float32.
        """
        return self.sigma(jnp.asarray(t, jnp.float32)) * jax.random.normal(key, shape)

    def posterior_mean_var(self, xt, x0, t, s):
        """q(z_s | z_t, x) = N(mu, var): mu = a_t s_s^2 / (a_s s_t^2) z + a_s r x, var = r s_s^2,
        r = sigma_{t|s}^2 / sigma_t^2 = -expm1(lambda_t - lambda_s) (docs/math.md §1.1; the z
        coefficient is a_{t|s} s_s^2 / s_t^2, written without 1 / a_t so that t = 1 is safe)."""
        tt, ss = expand(t, xt), expand(s, xt)
        r = -jnp.expm1(self.log_snr(tt) - self.log_snr(ss))
        a_t, s_t = self.alpha(tt), self.sigma(tt)
        a_s, s_s = self.alpha(ss), self.sigma(ss)
        return a_t * s_s**2 / (a_s * s_t**2) * xt + a_s * r * x0, r * s_s**2

    def posterior(self, key, xt, t, s, pred):
        """z_s ~ q(z_s | z_t, x_hat): the ancestral (DDPM) move."""
        mean, var = self.posterior_mean_var(xt, self.x0_eps(pred, xt, t)[0], t, s)
        return mean + jnp.sqrt(var) * jax.random.normal(key, xt.shape)

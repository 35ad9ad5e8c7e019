"""The cost of the particle system: weights plus resampling as a share of a sampling step.

python benchmarks/smc_overhead.py [--particles 4096] [--steps 10] [--config diffusion_digits]

Times K DDPM steps of the config's network (initial parameters: speed does not depend on
training) for N particles three ways, each compiled first and timed over `repeats` runs:
plain DDPM; SMC with a free potential (log G = 0, resampling forced every step); and FK steering
toward the digit classifier's log p(class 3 | x) at Tweedie's estimate. On a CPU the step-to-step
noise of the network is larger than the particle work, so the particle work is also timed on
its own: one jitted call of everything a particle step adds to a sampler step (the reward at
Tweedie's estimate, the diff potential, ESS, systematic ancestors, copying particles,
predictions and memory), best of 50 calls. Overhead share = t_particles / (t_step +
t_particles). Writes smc_overhead_<platform>.json.
"""

from absl import app, flags  # noqa: E402

_N = flags.DEFINE_integer("particles", 4096, "number of particles")
_STEPS = flags.DEFINE_integer("steps", 10, "DDPM steps per timed run")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed runs (the best is kept)")
_CONFIG = flags.DEFINE_string("config", "diffusion_digits", "config whose network is timed")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def particle_step(comp, reward, shape, cond):
    """A call of everything a particle step adds to a sampler step, on fixed inputs."""
    import jax
    import jax.numpy as jnp

    from difflab.samplers import resampling, steering
    from difflab.samplers.solvers import Bound

    model = Bound(comp.denoiser(comp.init_params), comp.process, cond)
    potential = steering.reward_potential(reward, 1.0)
    x = jax.random.normal(jax.random.key(1), shape)
    pred = jax.random.normal(jax.random.key(2), shape)
    memory = potential.start(x)
    log_w = jnp.zeros(shape[:1])

    @jax.jit
    def work(key, x, pred, memory, log_w):
        log_g, memory = potential.step(key, model, pred, x, 0.5, 0.45, memory)
        log_w = log_w + log_g
        a = resampling.systematic(key, log_w)
        due = resampling.ess(log_w) < 2 * shape[0]  # always: the full cost
        a = jnp.where(due, a, jnp.arange(shape[0]))
        return jax.tree.map(lambda v: v[a], (x, pred, memory)), jnp.where(due, 0.0, log_w)

    return lambda: work(jax.random.key(0), x, pred, memory, log_w)


def main(argv):
    del argv
    import importlib

    import jax
    import jax.numpy as jnp

    from difflab import samplers
    from difflab.benchmarks.common import first_and_best_seconds, write_result
    from difflab.data import rewards
    from difflab.samplers import smc, steering
    from difflab.training.components import build

    config = importlib.import_module(f"difflab.configs.{_CONFIG.value}").get_config()
    comp = build(config)
    n, steps = _N.value, _STEPS.value
    shape = (n, *comp.dataset.shape)
    grid = samplers.grid("ddpm", comp.process, steps)
    cond = jnp.zeros(n, jnp.int32) if comp.num_classes else None
    step = samplers.smc_step(config.process.family, "ddpm")
    free = smc.Potential(
        start=lambda x: (),
        step=lambda key, model, pred, x, t, s, m: (jnp.zeros(x.shape[:1]), m),
        final=lambda key, model, x, m: jnp.zeros(x.shape[:1]),
    )
    reward = rewards.build("class", "3", comp.dataset)
    settings = {
        "plain DDPM": samplers.get(config.process.family, "ddpm"),
        "SMC, free potential, resampling every step": smc.smc(step, free, resample_every=1),
        "FK steering, digit-classifier reward (diff)": smc.smc(
            step, steering.reward_potential(reward, 1.0)
        ),
    }
    times = {}
    for name, sampler in settings.items():

        @jax.jit
        def run(key, params, sampler=sampler):
            return sampler(key, comp.denoiser(params), comp.process, shape, cond, grid)[0]

        call = lambda run=run: run(jax.random.key(0), comp.init_params)
        times[name] = first_and_best_seconds(call, _REPEATS.value)[1]
        print(f"{name}: {times[name] / steps * 1e3:.1f} ms per step", flush=True)
    plain = times["plain DDPM"]
    particle_work = particle_step(comp, reward, shape, cond)
    isolated = first_and_best_seconds(particle_work, 50)[1]
    print(f"particle work alone: {isolated * 1e3:.2f} ms per step", flush=True)
    rows = [
        {
            "setting": name,
            "seconds_per_step": round(t / steps, 5),
            "overhead_share": round((t - plain) / t, 4),
        }
        for name, t in times.items()
    ]
    result = {
        "config": _CONFIG.value,
        "network": config.model.net,
        "particles": n,
        "steps": steps,
        "timing": f"best of {_REPEATS.value} runs after a compiling run",
        "rows": rows,
        "particle_work_seconds_per_step": round(isolated, 6),
        "particle_work_share_of_a_step": round(isolated / (plain / steps + isolated), 5),
    }
    write_result(f"smc_overhead_{jax.default_backend()}", result, _OUT.value)


if __name__ == "__main__":
    app.run(main)

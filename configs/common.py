"""Shared defaults: every experiment config starts from `base()` and changes what it needs.

Configs are Python files (ml_collections `get_config()`), loaded by absl `config_flags`; every field
can be overridden from the command line, e.g. `--config.optim.lr=3e-4`. The ConfigDict is locked
and typed, so a misspelt key or a value of the wrong type is an error, not a silent default.
"""

import ml_collections


def flow_process() -> ml_collections.ConfigDict:
    """Flow matching (docs/math.md §2)."""
    p = ml_collections.ConfigDict()
    p.family = "flow"
    p.path = "linear"  # linear | cosine | stochastic
    p.sigma_min = 0.0
    p.time_sampling = "uniform"  # uniform (antithetic) | logit_normal
    p.logit_mean = 0.0
    p.logit_std = 1.0
    p.label_dropout = 0.0
    return p


def diffusion_process() -> ml_collections.ConfigDict:
    """Variance-preserving Gaussian diffusion (docs/math.md §1)."""
    p = ml_collections.ConfigDict()
    p.family = "diffusion"
    p.schedule = "cosine"  # cosine (log-SNR form) | linear (beta)
    p.lambda_min = -15.0  # cosine: log-SNR at t = 1
    p.lambda_max = 15.0  # cosine: log-SNR at t = 0
    p.beta_0 = 0.1  # linear
    p.beta_1 = 20.0  # linear
    p.t_min = 1e-5  # linear: smallest t used in training and sampling
    # v, not eps: with lambda(1) = -15, x_hat = (z - sigma eps_hat) / alpha multiplies eps errors
    # by 1 / alpha_1 ~ 1800 near t = 1, which wrecks DDIM and the ODE samplers (docs/math.md §1.8;
    # measured on diffusion_checkerboard: eps + DDIM-100 gave SW 2.79 vs 0.038 data-vs-data).
    p.parameterization = "v"  # eps | x0 | v
    p.loss = "v"  # simple (eps MSE) | v (v MSE) | elbo (VDM NELBO, bits/dim)
    p.label_dropout = 0.0
    return p


def classifier_process(noise: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A noise-conditional classifier p(c | x_t, t) under `noise`, the forward process of the
    Gaussian model it guides (docs/math.md §6.2): its fields, family "classifier"."""
    p = ml_collections.ConfigDict(noise.to_dict())
    p.noise_family = noise.family
    p.family = "classifier"
    return p


def value_process(noise: ml_collections.ConfigDict, reward: str, reward_arg: str = ""):
    """A noise-conditional value f(x_t, t) ~ E[r(x_0) | x_t] under `noise`, the forward process
    of the model whose rollouts it learns from (SVDD-MC, docs/math.md §6.4): its fields, family
    "value", and the named reward (data.rewards)."""
    p = ml_collections.ConfigDict(noise.to_dict())
    p.noise_family = noise.family
    p.family = "value"
    p.reward = reward
    p.reward_arg = reward_arg
    return p


def masked_process() -> ml_collections.ConfigDict:
    """Masked (absorbing-state) diffusion for tokens (docs/math.md §3; defaults §3.6)."""
    p = ml_collections.ConfigDict()
    p.family = "masked"
    p.schedule = "linear"  # linear | cosine | polynomial (alpha_t = 1 - t^power)
    p.schedule_power = 2.0  # polynomial only
    p.mask_eps = 1e-4  # MD4 clip: alpha_0 = 1 - eps, alpha_1 = eps
    p.loss_steps = 0  # 0: continuous-time NELBO; T > 0: discrete-time NELBO with T steps
    p.label_dropout = 0.0
    return p


def uniform_process() -> ml_collections.ConfigDict:
    """Uniform-state diffusion for tokens (docs/math.md §3.9): the masked family's schedules,
    unclipped (alpha_0 = 1, alpha_1 = 0)."""
    p = masked_process()
    p.family = "uniform"
    p.mask_eps = 0.0
    return p


def counts_process() -> ml_collections.ConfigDict:
    """Count flow matching (docs/math.md §4): birth-death bridge, Poisson rate matching."""
    p = ml_collections.ConfigDict()
    p.family = "counts"
    p.source = "poisson"  # poisson | negbin | zeros | data (the data set's source population)
    p.source_rate = 1.0  # poisson / negbin mean (count-FM: Poisson(1))
    p.source_shape = 1.0  # negbin shape r
    p.coupling = "independent"  # independent | ot (minibatch exact OT on the global batch)
    p.ot_cost = "l1"  # l1 | sqeuclidean | poisson
    p.t_eps = 1e-4
    p.grid_power = 0.5  # sampling grid t_k = (1 - k/K)^power, dense near t = 1 (tau-leaping)
    p.label_dropout = 0.0
    return p


def shortcut_process() -> ml_collections.ConfigDict:
    """Shortcut models (docs/math.md §5.1, reference-code defaults)."""
    p = ml_collections.ConfigDict()
    p.family = "shortcut"
    p.levels = 7  # step sizes 2^-k, k = 0..7: 1 to 128 sampling steps
    p.bootstrap_every = 8  # 1/8 of each batch trains self-consistency
    p.target_params = "ema"  # ema | online (stop-gradient of the current parameters)
    p.bootstrap_cfg = False  # CFG-guided targets at the finest bootstrap level
    p.cfg_scale = 1.5
    p.clip = 4.0
    p.label_dropout = 0.1
    return p


def meanflow_process() -> ml_collections.ConfigDict:
    """MeanFlow (docs/math.md §5.2, reference-code defaults)."""
    p = ml_collections.ConfigDict()
    p.family = "meanflow"
    p.time_sampling = "logit_normal"  # logit_normal | uniform: both of (t, r), then ordered
    p.logit_mean = -0.4
    p.logit_std = 1.0
    p.flow_fraction = 0.75  # rows with r = t (plain flow matching)
    p.norm_p = 1.0
    p.norm_eps = 0.01
    p.cfg_omega = 1.0  # guidance folded into the target: omega = 1, kappa = 0 is none
    p.cfg_kappa = 0.0
    p.label_dropout = 0.1
    return p


def base(name: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = name
    c.seed = 0
    c.workdir = ""  # empty: runs/<name>

    c.data = ml_collections.ConfigDict()
    c.data.name = "checkerboard"
    c.data.seed = 0
    c.data.split = "train"
    c.data.path = ""
    c.data.num_classes = 0  # user files: 0 infers max(label) + 1
    c.data.dequantize = 0.0  # bin width of uniform dequantisation noise (digits: 1/8); 0 = off
    c.data.seq_len = 0  # token data: sequence length (text windows; arrays: 0 = as stored)
    c.data.vocab_size = 0  # token data: markov chain size; tokens_npz: the declared vocabulary
    c.data.text_mode = "chars"  # text: chars (distinct characters) | bytes (256 UTF-8 bytes)
    c.data.dim = 0  # simulated cells: number of genes (0: 100)
    c.data.label_key = ""  # counts_h5ad: the obs column holding labels ("" = unlabelled)
    c.data.count_view = "counts"  # counts | log1p (dequantised points) | tokens (capped)
    c.data.count_cap = 0  # count_view=tokens: counts above the cap become the cap

    c.model = ml_collections.ConfigDict()
    c.model.net = "mlp"
    c.model.dtype = "float32"  # compute dtype; "bfloat16" on GPU/TPU. Parameters stay float32.
    c.model.width = 256
    c.model.depth = 3
    c.model.mults = (1, 2)
    c.model.blocks = 2
    c.model.patch = 2
    c.model.heads = 4
    c.model.mlp_ratio = 4.0
    c.model.conditional = False  # condition on data labels (with label dropout for CFG)
    c.model.time_conditioning = True  # False: the network ignores t (masked diffusion allows it)
    c.model.step_conditioning = False  # a step-size input h (shortcut / MeanFlow networks)
    c.model.time_scale = 1000.0  # top sinusoidal frequency of t (and h); MeanFlow uses 10

    c.process = flow_process()

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.optim.min_lr_ratio = 0.1  # cosine decays to lr * min_lr_ratio at train.steps
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 1.0  # global-norm clipping

    c.train = ml_collections.ConfigDict()
    c.train.steps = 4000
    c.train.batch_size = 256  # global, over all devices and processes
    c.train.steps_per_call = 1  # >1: several steps per jitted call (lax.scan)
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.eval_every = 1000  # and at the last step; 0: no evaluation at all
    c.train.save_every = 1000
    c.train.keep_checkpoints = 3
    # non-finite loss or gradients: the update is never applied; "stop" ends the run with the
    # step and the metric, "skip" goes on and counts skipped steps in the metrics
    c.train.nonfinite = "stop"

    c.eval = ml_collections.ConfigDict()
    c.eval.sampler = "heun"
    c.eval.steps = 50
    c.eval.num_samples = 2000  # samples drawn for plots and metrics at each eval
    c.eval.seed = 0
    return c

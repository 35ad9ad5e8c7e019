"""What a run is made of: the data set, the network (graph definition and initial parameters)
and the process described by a config, with the checks that they fit together."""

from __future__ import annotations

import dataclasses
import functools

from difflab import data, models
from difflab.data import counts, rewards
from difflab.models import families, nets


@dataclasses.dataclass
class Components:
    config: object
    dataset: object
    graphdef: object
    net_args: tuple  # nets.build's arguments: the initial parameters are made on first use
    process: object
    num_classes: int  # classes the network is conditioned on (0: unconditional)
    # compiled samplers by setting (sampling.draw.compiled_sampler)
    compiled: dict = dataclasses.field(default_factory=dict, repr=False)

    @functools.cached_property
    def init_params(self) -> dict:
        """The network's parameters initialised from config.seed, made when first asked for
        (a run loaded from a checkpoint never initialises its network)."""
        return models.split(nets.build(*self.net_args))[1]

    def denoiser(self, params):
        """The sampling denoiser (average-velocity models: at their trained velocity step)."""
        den = models.denoiser(self.graphdef, params)
        wrap = getattr(self.process, "sampling_denoiser", None)
        return den if wrap is None else wrap(den)


def build(config) -> Components:
    """Data set, network (its structure; its parameters initialised from config.seed on first
    use) and process described by `config`."""
    dataset = data.build(config.data)
    if config.model.conditional and not dataset.num_classes:
        raise ValueError(
            f"config.model.conditional=True needs labelled data, but data set "
            f"{config.data.name!r} has no labels"
        )
    classifier = config.process.family == "classifier"
    if classifier and not dataset.num_classes:
        raise ValueError(
            f"config.process.family='classifier' needs labelled data; data set "
            f"{config.data.name!r} has no labels"
        )
    # a classifier's network outputs the classes; a conditional model's takes them as input
    num_classes = dataset.num_classes if config.model.conditional or classifier else 0
    vocab_size = getattr(dataset, "vocab_size", 0)
    check_family_fits_data(modelled_family(config), dataset)
    check_net_fits_family(config.model.net, config.process.family)
    net_args = (config.model, dataset.shape, num_classes, config.seed, vocab_size)
    graphdef = nets.structure(*net_args)
    process = models.build_process(config, vocab_size, getattr(dataset, "source", None))
    if config.process.family == "value":  # the reward its network regresses on
        reward = rewards.build(config.process.reward, config.process.reward_arg, dataset)
        process = dataclasses.replace(process, reward=reward)
    if config.process.family == "counts":
        dataset = pair_source(dataset, process, config)
    return Components(config, dataset, graphdef, net_args, process, num_classes)


def pair_source(dataset, process, config):
    """Count flows: batches carry their paired source rows when the source is a population or
    the coupling is minibatch OT (independent parametric sources are drawn inside the loss)."""
    pc = config.process
    if pc.source != "data" and pc.coupling == "independent":
        return dataset
    shape = tuple(dataset.shape)

    def draw(key, n):
        return process.prior(key, (n, *shape))

    return counts.PairedSource(dataset, draw, pc.coupling, pc.ot_cost, config.data.seed)


def modelled_family(config) -> str:
    """The family whose forward process the run's data goes through: a head's (classifier,
    value: not sampled) noise family."""
    pc = config.process
    return pc.family if families.get(pc.family).sampled else pc.noise_family


def check_family_fits_data(family: str, dataset) -> None:
    """Tokens need masked diffusion, counts the count flow, points and images a Gaussian family."""
    need = families.get(family).data
    have = dataset.kind if dataset.kind in ("tokens", "counts") else "continuous"
    if need != have:
        fits = sorted(families.having(lambda f: f.data == have))
        raise ValueError(
            f"config.process.family={family!r} cannot model the {dataset.kind} of data set "
            f"{dataset.name!r}; use one of {fits}"
        )


def check_net_fits_family(net: str, family: str) -> None:
    """The counts family needs a network that outputs log-rates and the classifier family one
    that outputs class logits, and only they do."""
    need = families.get(family).nets
    if nets.output(net) != need:
        fits = [n for n in nets.NETWORKS if nets.output(n) == need]
        raise ValueError(
            f"config.model.net={net!r} does not fit config.process.family={family!r}; "
            f"use one of {fits}"
        )

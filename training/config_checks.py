"""Start-up checks of a config's derived quantities; each message says what to change."""

from __future__ import annotations

from difflab import samplers


def check(config, device_count: int) -> None:
    tc = config.train
    errors = []
    if tc.batch_size <= 0 or tc.batch_size % device_count:
        fix = max(device_count, tc.batch_size // device_count * device_count)
        errors.append(
            f"config.train.batch_size={tc.batch_size} must be a positive multiple of the "
            f"{device_count} devices; use e.g. --config.train.batch_size={fix}"
        )
    if tc.steps_per_call < 1:
        errors.append(f"config.train.steps_per_call={tc.steps_per_call} must be >= 1")
    else:
        for name in ("steps", "log_every", "eval_every", "save_every"):
            v = tc[name]
            if name == "eval_every" and v == 0:  # 0: never evaluate, not even at the end
                continue
            if v <= 0 or v % tc.steps_per_call:
                errors.append(
                    f"config.train.{name}={v} must be a positive multiple of "
                    f"config.train.steps_per_call={tc.steps_per_call}"
                    + (" (or 0: no evaluation)" if name == "eval_every" else "")
                )
    if not 0.0 <= tc.ema_decay < 1.0:
        errors.append(f"config.train.ema_decay={tc.ema_decay} must lie in [0, 1)")
    if tc.nonfinite not in ("stop", "skip"):
        errors.append(f"config.train.nonfinite={tc.nonfinite!r} must be 'stop' or 'skip'")
    if tc.keep_checkpoints < 1:
        errors.append(f"config.train.keep_checkpoints={tc.keep_checkpoints} must be >= 1")
    if config.eval.num_samples <= 0 or config.eval.steps <= 0:
        errors.append(
            f"config.eval.num_samples={config.eval.num_samples} and config.eval.steps="
            f"{config.eval.steps} must be positive"
        )
    if config.optim.lr <= 0:
        errors.append(f"config.optim.lr={config.optim.lr} must be positive")
    if not 0.0 <= config.process.label_dropout < 1.0:
        errors.append(
            f"config.process.label_dropout={config.process.label_dropout} must lie in [0, 1)"
        )
    pc = config.process
    if pc.family == "shortcut":
        rows, levels = tc.batch_size // pc.bootstrap_every, pc.levels
        if tc.batch_size % pc.bootstrap_every or rows < levels:
            errors.append(
                f"config.train.batch_size={tc.batch_size} gives {rows} self-consistency rows for "
                f"{levels} step levels: it must be a multiple of config.process.bootstrap_every="
                f"{pc.bootstrap_every} and at least {pc.bootstrap_every * levels}"
            )
    if pc.family in ("shortcut", "meanflow") and not config.model.step_conditioning:
        errors.append(
            f"config.process.family={pc.family!r} needs config.model.step_conditioning=True"
        )
    if pc.family == "classifier" and config.model.conditional:
        errors.append(
            "config.model.conditional must be False for a classifier (it predicts labels)"
        )
    try:
        if pc.family not in ("classifier", "value"):  # heads are not sampled
            samplers.check(config.process.family, config.eval.sampler)
    except ValueError as e:
        errors.append(f"config.eval.sampler: {e}")
    if errors:
        raise ValueError("invalid config: " + "; ".join(errors))

"""Offline transfer tasks: a pretrained network, a target task that differs from it, and its data.

A ``Task`` offers ``base_model()`` (a fresh copy of the pretrained network), ``train_set(n, seed)``
(n target examples, deterministic, a different draw per seed), ``test_set()`` (fixed, never overlapping
a training set), ``source_test_set()`` and ``describe()``. Networks are ``nn.Sequential`` stacks of
named ``nn.Linear`` layers and elementwise ReLUs: they accept ``(K, batch, d_in)`` and ``(batch, d_in)``.
Tasks: ``digits`` (default; scikit-learn's bundled 8×8 digits, target = the images under a fixed pixel
permutation), ``teacher`` (a random teacher MLP, target = the teacher with a rank-k change of hidden
weights), ``linreg`` (THEORY.md §2 with one bias-free linear layer), ``local:TASK_FILE`` (a user's
transformers model on the user's labelled data, ``tasks.local``).

``loss_kind``: ``"zero_one"`` (y int64 labels ``(n,)``, outputs are logits) or ``"mse"`` (y float32
``(n, d_out)``; squared error *averaged* over outputs, as ``harness.train``'s ``Loss.MSE``, so the task
loss is THEORY's L (a sum over outputs) divided by d_out: ``LinregTask.loss_scale``).

No global RNG is touched: numpy draws use ``np.random.default_rng([seed, stream tag])``, one tag per
purpose; torch initialisation runs inside ``torch.random.fork_rng``; minibatches use a
``torch.Generator``. Training sets are prefix-consistent: ``train_set(n, s) = train_set(m, s)[:n]``.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from ...errors import InputError
from .base import Task, TaskConfig, clear_pretrain_cache, mlp
from .digits import DIGIT_TRANSFORMS, DigitsConfig, DigitsTask
from .linreg import LinregConfig, LinregTask
from .local import LocalConfig, LocalTask
from .mnist import INPUT_SHIFTS, OUTPUT_SHIFTS, SHIFTS, MnistConfig, MnistTask
from .teacher import TeacherConfig, TeacherTask, teacher_logits

__all__ = [
    "DEFAULT_TASK", "DIGIT_TRANSFORMS", "INPUT_SHIFTS", "OUTPUT_SHIFTS", "SHIFTS", "TASKS", "DigitsConfig",
    "DigitsTask", "LinregConfig", "LinregTask", "LocalConfig", "LocalTask", "MnistConfig", "MnistTask", "Task", "TaskConfig", "TeacherConfig", "TeacherTask", "clear_pretrain_cache",
    "canonical_task_name", "get_task", "mlp", "split_task_name", "task_names", "teacher_logits",
]

# ------------------------------------------------------------------------------------ registry
TASKS: dict[str, type[Task]] = {"digits": DigitsTask, "teacher": TeacherTask, "linreg": LinregTask,
                                 "mnist": MnistTask, "local": LocalTask}
DEFAULT_TASK = "digits"


def get_task(name: str = DEFAULT_TASK, config: TaskConfig | None = None, **overrides) -> Task:
    """The task ``name`` with ``config`` (default: the task's default config), ``overrides`` applied.

    ``NAME[/MODEL][:SHIFT]``: ``:SHIFT`` sets the task's shift setting (``digits:flip`` is digits with
    transform flip, ``mnist:permute`` is mnist with shift permute) and ``/MODEL`` its model setting
    (``mnist/vit:permute`` is the vision transformer on permuted labels). Pretrained weights are
    cached per config, so repeated calls pretrain once.
    """
    if not isinstance(name, str):
        raise InputError(f"task must be a task name ({', '.join(TASKS)}), got {type(name).__name__}")
    base, model, shift = split_task_name(name)
    cls = TASKS[base]
    for setting, value, what in ((cls.shift_setting, shift, "shift"), (cls.model_setting, model, "model")):
        if value is None:
            continue
        if setting is None:
            with_it = ", ".join(k for k, c in TASKS.items() if getattr(c, f"{what}_setting")) or "(none)"
            raise InputError(f"task {base!r} has no {what} setting, got {name!r}; tasks with one: {with_it}")
        if setting in overrides:
            raise InputError(f"task {name!r} and {setting}={overrides[setting]!r} both set the {what}")
        overrides = {**overrides, setting: value}
    name = base
    if config is not None and not isinstance(config, cls.config_class):
        raise InputError(f"config for task {name!r} must be a {cls.config_class.__name__}, got {type(config).__name__}")
    if overrides:
        allowed = [f.name for f in fields(cls.config_class)]
        unknown = [key for key in overrides if key not in allowed]
        if unknown:
            raise InputError(f"{', '.join(unknown)}: not a setting of task {name!r}; allowed: {', '.join(allowed)}")
        config = cls.config_class(**{**({} if config is None else asdict(config)), **overrides})
    return cls(config)


def split_task_name(name: str) -> tuple[str, str | None, str | None]:
    """``NAME[/MODEL][:SHIFT]`` -> (name, model or None, shift or None); an unknown NAME, or an empty
    MODEL or SHIFT, is an InputError."""
    head, colon, shift = name.strip().partition(":")
    base, slash, model = head.partition("/")
    if base not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)} (optionally NAME/MODEL:SHIFT), got {name!r}")
    for sep, value, what in ((slash, model, "model"), (colon, shift, "shift")):
        if sep and not value.strip():
            raise InputError(f"task {name!r}: the {what} after {sep!r} is empty")
    return base, (model.strip() or None) if slash else None, (shift.strip() or None) if colon else None


def canonical_task_name(name: str) -> str:
    """``name`` with a model part naming the task's default model left out (``mnist/mlp:permute`` is
    ``mnist:permute``), so the same sweep has the same store keys however it is written."""
    base, model, shift = split_task_name(name)
    cls = TASKS[base]
    if model is not None and cls.model_setting is not None:
        default = next(f.default for f in fields(cls.config_class) if f.name == cls.model_setting)
        if model == default:
            model = None
    canonical = getattr(cls, "canonical_setting", None)
    if shift is not None and canonical is not None:
        shift = canonical(shift)
    return base + (f"/{model}" if model else "") + (f":{shift}" if shift else "")


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)

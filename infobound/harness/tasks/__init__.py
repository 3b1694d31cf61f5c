"""Offline transfer tasks: a pretrained network, a target task that differs from it, and its data.

A ``Task`` offers ``base_model()`` (a fresh copy of the pretrained network), ``train_set(n, seed)``
(n target examples, deterministic, a different draw per seed), ``test_set()`` (fixed, never overlapping
a training set), ``source_test_set()`` and ``describe()``. Networks are ``nn.Sequential`` stacks of
named ``nn.Linear`` layers and elementwise ReLUs: they accept ``(K, batch, d_in)`` and ``(batch, d_in)``.
Tasks: ``digits`` (default; scikit-learn's bundled 8×8 digits, target = the images under a fixed pixel
permutation), ``teacher`` (a random teacher MLP, target = the teacher with a rank-k change of hidden
weights), ``linreg`` (THEORY.md §2 with one bias-free linear layer).

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
from .mnist import INPUT_SHIFTS, OUTPUT_SHIFTS, SHIFTS, MnistConfig, MnistTask
from .teacher import TeacherConfig, TeacherTask, teacher_logits

__all__ = [
    "DEFAULT_TASK", "DIGIT_TRANSFORMS", "INPUT_SHIFTS", "OUTPUT_SHIFTS", "SHIFTS", "TASKS", "DigitsConfig",
    "DigitsTask", "LinregConfig", "LinregTask", "MnistConfig", "MnistTask", "Task", "TaskConfig", "TeacherConfig", "TeacherTask", "clear_pretrain_cache",
    "get_task", "mlp", "task_names", "teacher_logits",
]

# ------------------------------------------------------------------------------------ registry
TASKS: dict[str, type[Task]] = {"digits": DigitsTask, "teacher": TeacherTask, "linreg": LinregTask,
                                 "mnist": MnistTask}
DEFAULT_TASK = "digits"


def get_task(name: str = DEFAULT_TASK, config: TaskConfig | None = None, **overrides) -> Task:
    """The task ``name`` with ``config`` (default: the task's default config), ``overrides`` applied.

    ``NAME:VALUE`` sets the task's shift setting (``digits:flip`` is digits with transform flip,
    ``mnist:permute`` is mnist with shift permute). Pretrained weights are cached in memory per
    config, so repeated calls pretrain once per process.
    """
    if not isinstance(name, str):
        raise InputError(f"task must be a task name ({', '.join(TASKS)}), got {type(name).__name__}")
    base, sep, value = name.partition(":")
    if base not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)} (optionally NAME:SHIFT), got {name!r}")
    cls = TASKS[base]
    if sep:
        if cls.shift_setting is None:
            raise InputError(f"task {base!r} has no shift setting, got {name!r}; tasks with one: "
                             + ", ".join(k for k, c in TASKS.items() if c.shift_setting))
        if cls.shift_setting in overrides:
            raise InputError(f"task {name!r} and {cls.shift_setting}={overrides[cls.shift_setting]!r} both set the shift")
        overrides = {**overrides, cls.shift_setting: value}
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


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)

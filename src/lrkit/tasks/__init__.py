"""Bundled offline tasks and the registry users extend (`register_task`)."""

from lrkit.tasks import bundled, charlm, digits, fashion, transfer  # noqa: F401  (register the bundled tasks)
from lrkit.tasks.registry import Task, TaskData, available_tasks, get_task, register_task
from lrkit.torch.evaluation import accuracy

__all__ = ["Task", "TaskData", "accuracy", "available_tasks", "get_task", "register_task"]

"""Annotation: chain-of-thought labels tied to the policy's decision steps."""

from bastion.annotation.schema import (
    Annotation,
    PathStep,
    Region,
    Span,
    TaskForm,
    check_annotation,
    task_form,
)

__all__ = ["Annotation", "PathStep", "Region", "Span", "TaskForm", "check_annotation", "task_form"]

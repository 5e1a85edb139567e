"""2D teachers whose features a field distils (see :mod:`semfield.teachers.base` for the contract)."""

from .base import Teacher, TeacherOutput

__all__ = ["Teacher", "TeacherOutput"]

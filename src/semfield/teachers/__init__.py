"""2D teachers whose features a field distils (see :mod:`semfield.teachers.base` for the contract).

Models load lazily: build teachers with :func:`semfield.teachers.registry.build_teacher` or import the
module of the one you need (``dinov2``, ``clip``, ``siglip``, ``label``).
"""

from .base import Teacher, TeacherOutput

__all__ = ["Teacher", "TeacherOutput"]

"""Pure rendering functions over tensors: rays, sampling along rays, compositing.

Nothing here owns parameters or touches files; fields and trainers compose these functions.
"""

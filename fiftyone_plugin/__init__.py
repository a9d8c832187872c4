"""``@stvg/grounding``: a FiftyOne plugin (this folder holds ``fiftyone.yml``) and a Python package.

Importing the package does not import fiftyone: ``render`` and ``report`` work without it, and
``db`` checks the database set-up before fiftyone starts. FiftyOne calls :func:`register`, which
loads the (thin) operators of ``operators.py``; the logic lives in ``io.py`` / ``labels.py``.
"""


def register(p) -> None:
    """Plugin entry point (FiftyOne loads this file and calls it)."""
    from .operators import OPERATORS

    for op in OPERATORS:
        p.register(op)

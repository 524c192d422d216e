"""medcls: train, evaluate and compare medical image classifiers.

The Python API (:mod:`medcls.api`): ``medcls.train``, ``medcls.evaluate``, ``medcls.load``,
``medcls.report`` and ``medcls.compose``; loaded on first use, so that ``import medcls`` and the
command-line tools stay quick.
"""

__version__ = "0.1.0"
__all__ = ["RunResult", "compose", "evaluate", "load", "report", "train"]


def __getattr__(name: str):
    if name in __all__:
        from medcls import api

        return getattr(api, name)
    raise AttributeError(f"module 'medcls' has no attribute {name!r}")

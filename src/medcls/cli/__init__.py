"""The command-line entry points, one module per command (``[project.scripts]`` in pyproject):
each parses its arguments or Hydra config and calls a workflow in :mod:`medcls.workflows`.

They live apart from the package's top level so that importing one (``import
medcls.cli.train``) never shadows the Python API functions ``medcls.train``, ``medcls.evaluate``,
``medcls.load`` and ``medcls.report``.
"""

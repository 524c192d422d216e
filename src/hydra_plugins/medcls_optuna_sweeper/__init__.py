"""medcls's Optuna sweeper for Hydra (``hydra/sweeper=medcls_optuna``; ``hparams_search=optuna``).

Hydra loads sweepers only from the ``hydra_plugins`` namespace, and imports every module in it
at each start: this package imports neither optuna nor medcls until a sweep begins.
"""

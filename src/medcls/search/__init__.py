"""Hyper-parameter search with Optuna, in one package: :mod:`~medcls.search.study` (search
spaces, samplers, pruners, the study and its trials: what the Hydra sweeper in
``hydra_plugins/medcls_optuna_sweeper`` asks and tells), :mod:`~medcls.search.trial` (a job's
side: its trial's tags and pruning) and :mod:`~medcls.search.pruning` (the Lightning callback
that reports each epoch and stops a pruned trial)."""

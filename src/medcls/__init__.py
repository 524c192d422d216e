"""medcls: train, evaluate and compare medical image classifiers."""

__version__ = "0.1.0"

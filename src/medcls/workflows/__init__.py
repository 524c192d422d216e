"""What the entry points run: training, evaluation, prediction."""

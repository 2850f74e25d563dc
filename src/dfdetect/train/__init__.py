"""Training: tasks, losses, optimisation, the generic loop, checkpoints and logging."""

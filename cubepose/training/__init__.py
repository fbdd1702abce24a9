"""Training without edflow: the one training step, optimiser and schedule, gradient accumulation, guards
against divergence, checkpoints, seeding, devices and acceleration (mixed precision, channels-last, compile)."""

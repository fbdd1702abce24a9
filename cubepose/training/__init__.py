"""Training without edflow: the one training step, optimiser and schedule, gradient accumulation, guards
against divergence, checkpoints, seeding, devices, acceleration (mixed precision, channels-last, compile) and
the progress line."""

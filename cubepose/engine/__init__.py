"""The only code that imports edflow: the Iterator (train_op / log_op / eval_op), the eval callbacks,
edflow's error handling and the run's code copy. Everything it calls lives in the rooms below it."""

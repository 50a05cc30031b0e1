"""Lightning: the training module, its data module, teacher targets and callbacks."""

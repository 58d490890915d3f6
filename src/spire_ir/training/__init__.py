"""Training: ``spire train`` (the adaptor), ``spire train-vae`` and ``spire train-base`` (small frozen priors)."""

"""TFX Trainer of the pipeline: the CNN, its adversarially regularized training step,
the in-memory input pipeline and the SavedModel export. Entry point:
``components.trainer.run_fn.run_fn``."""

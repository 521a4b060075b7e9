"""Pure adversarial math (perturbations, losses), shared by the Trainer and the
robustness Evaluator. Tensors in, tensors out: no Keras, no TFX."""

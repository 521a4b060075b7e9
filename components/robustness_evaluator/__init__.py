"""Custom TFX Evaluator that blesses a model only if it stays accurate under
white-box FGSM and PGD attacks (and does not regress against the latest blessed
model). attacks.py and metrics.py are pure; component.py and executor.py are TFX."""

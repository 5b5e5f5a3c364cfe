"""Training only (runs a training script): importable so a training-and-serving script loads; holds nothing."""

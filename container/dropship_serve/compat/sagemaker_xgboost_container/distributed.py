"""Training only (distributed training with Rabit): importable so a training-and-serving script loads; holds nothing."""

"""Training only (downloads and installs a training module): importable, holds nothing."""

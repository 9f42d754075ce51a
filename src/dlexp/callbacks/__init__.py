"""Our own Lightning callbacks; everything else comes from ``lightning.pytorch.callbacks``."""

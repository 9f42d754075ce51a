"""LightningModules: training logic that takes a network, never builds datasets."""

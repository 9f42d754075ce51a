"""LightningDataModules. They know nothing of models or tasks."""

"""dlexp's Hydra plugins (Hydra only loads plugins from the ``hydra_plugins`` namespace)."""

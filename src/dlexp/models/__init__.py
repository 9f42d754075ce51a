"""Plain ``nn.Module`` networks. They know nothing of data, tasks or Hydra."""

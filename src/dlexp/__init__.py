"""dlexp: Keras-course experiments on Lightning + Hydra."""

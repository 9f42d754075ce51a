"""Training methods beyond plain supervision that live in callbacks (pseudo-labelling)."""

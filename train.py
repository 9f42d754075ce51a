"""Thin launcher so `python train.py model=cnn optimizer=adam` works from the repository root."""

from dlexp.train import main

if __name__ == "__main__":
    main()

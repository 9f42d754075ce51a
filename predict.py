"""Thin launcher: `python predict.py CKPT IMAGE...` from the repository root."""

from dlexp.predict import main

if __name__ == "__main__":
    main()

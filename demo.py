"""Thin launcher: `python demo.py CKPT` from the repository root (see dlexp-demo)."""

from dlexp.demo import main

if __name__ == "__main__":
    main()

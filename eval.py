"""Thin launcher: `python eval.py ckpt_path=...` from the repository root."""

from dlexp.eval import main

if __name__ == "__main__":
    main()

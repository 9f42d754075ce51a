# Makes conf/ importable as the package dlexp.conf (Hydra loads it as pkg://dlexp.conf).

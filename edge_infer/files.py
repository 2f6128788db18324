from .io import atomic_path  # replaced at merge

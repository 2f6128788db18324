"""The evaluation of augmentation recipes, as its own small package.

* :mod:`.metrics` -- macro-F1, per-class recall (scikit-learn), paired statistics;
* :mod:`.autoencoders` -- the autoencoder retrained per fold, exported and cached;
* :mod:`.protocol` -- arms (recipes and their controls), the per-fold runs, cached results;
* :mod:`.fidelity` -- fidelity of variants under two readers, and the strength rule;
* :mod:`.report` -- paired gains, tables, the plot, the recommendation rule;
* :mod:`.cli` -- ``python -m training.evaluation usefulness|fidelity``.

The quality metrics of one generated set (validity, diversity, one-reader
fidelity) stay in :mod:`training.evaluate`, which other commands use.
scikit-learn, like torch, is a training dependency, never a runtime one.
"""

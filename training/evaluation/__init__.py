"""The evaluation: how good generated maps are, and which augmentation recipes help.

One job per module:

* :mod:`.metrics` -- plain functions: validity, dies changed, sibling and real
  copies, agreement; macro-F1 and per-class recall (scikit-learn), paired statistics;
* :mod:`.folds` -- the one fold split (stratified by class, identical maps together);
* :mod:`.readers` -- the out-of-fold reference classifiers that judge fidelity;
* :mod:`.rules` -- the default-strength rule and the done-when targets;
* :mod:`.quality` -- one generated set: validity, fidelity, diversity, usefulness;
* :mod:`.autoencoders` -- the autoencoder retrained per fold, exported and cached;
* :mod:`.protocol` -- the usefulness protocol: arms (recipes and their controls), per-fold runs, cached results;
* :mod:`.fidelity` -- fidelity of variants under two readers, per strength;
* :mod:`.report` -- text tables, paired gains, the plot, the recommendation rule;
* :mod:`.cli` -- ``python -m training.evaluation quality|usefulness|fidelity``.

The noise sweep (``python -m training.sweep``) is built on these modules.
scikit-learn, like torch, is a training dependency, never a runtime one.
"""

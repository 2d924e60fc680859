"""The library behind the programs at the repository's root (main.py, predict.py, demo.py, sweep.py), one module per
job and one level deep:

- training: recipes (what to train, each setting's kind and bounds), engine (the training loop, writing no files),
  runs (one run and its files), checkpoints (the checkpoint format's one owner), measurements (the report's
  measurements of a final model), figures;
- plumbing every program shares: cli (flags, signals, one-line errors), errors, files (atomic writes, locks,
  private folders), paths (what a path a user names really is);
- reading users' images: images (opening them safely), preprocess (making a digit MNIST-like), server (the demo's
  HTTP server);
- many runs and their comparison: runner (one after another, or at once on Ray), ray_local (what Ray needs around
  it on this machine), slots (a committed run checked against the place it fills, and the one check of an epoch's
  record), significance (which differences are real, and the words of a verdict).

model.py and dataset.py, the assignment's design card, stay at the root and take from here only errors and files.
"""

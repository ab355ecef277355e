"""Job logic that several jobs share, in modules that import no job.

A job (``pipelines/*.py``, ``pipelines/<pkg>/``) is an entry point: options in, a report out.
What more than one job needs lives here, so that no job is another job's library:

* ``registry``: model versions (the active one, a version's weights, "the dataset of this
  version"), reads and the registering of a new (inactive) version;
* ``datasets``: a frozen dataset version's manifest and splits as arrays;
* ``scoring``: which runtime scores, the scoring loop, and "score what is new" after a job
  added crops;
* ``measuring``: a version's figures on a validation split, from its weights or its stored
  predictions;
* ``autolabeling``: the auto-labeling pass (the ``autolabel`` job and every promotion run it);
* ``erasure``: erasing crops and sources everywhere (``erase`` and ``retention``);
* ``footage_source``: a footage source's row, its expected frames, and the one rule that
  numbers its tracks (extract, its Ray ranges and detect);
* ``simulation``: the labeling simulator's data, models and evaluation (``simulate`` and
  ``simulate_policies``).

The layer test (``tests/unit/test_layers.py``) keeps this folder free of job imports.
"""

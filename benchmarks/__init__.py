"""asv benchmarks generated from the harness's plugin registry (see asv.conf.json).

Every model of the tracked suites ($HARNESS_TRACKED_SUITES, default ``smoke``) gets a
class in each module, named after the model and parameterised by batch size, dtype
and compile mode (and by mode and dimensions where its cases vary in them):

* ``latency.<model>.time_step``: asv's own timing of the step the harness times;
* ``metrics.<model>.track_*``: the harness's own measurement of the same case:
  throughput, peak memory and, for compiled cases, compile time.
"""

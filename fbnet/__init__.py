"""The contracts shared by `profiler/` and `search/`: the FBNet search space and the LUT format.

Neither `profiler` nor `search` imports the other; both import from here.
"""

__version__ = "0.1.0"

"""poolconform: do deep learning frameworks agree on pooling?

Nothing here imports a framework; each backend imports its own inside a worker process.
"""

__version__ = "0.1.0"

"""cxrcap: chest X-ray captioning with four models side by side.

Captions are research suggestions, never clinical decisions.
"""

__version__ = "0.1.0"

"""fusion_perception: IR/visible fusion + segmentation + detection for ROS 2.

Layers (docs/DESIGN.md "Layers"), lowest first; nothing imports upward:
``preprocessing`` -> ``runtime`` -> (``models``, ``training``, ``export``: torch) ->
``ros`` / ``bag`` -> ``cli``. The runtime layers never import torch.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"

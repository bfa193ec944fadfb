"""ROS 2 layer: the lifecycle node and its small pure helpers (parameters, messages, diagnostics).

Thin by design (docs/DESIGN.md "Layers"): image math lives in ``preprocessing`` and ``runtime``; this
package only moves messages in and out of :class:`~fusion_perception.runtime.pipeline.Pipeline`.
"""

"""PyTorch backend: the deployed graph straight from a training checkpoint (CUDA FP16 or CPU FP32).

It exists so GPU figures can be measured without TensorRT, and so export can be checked against
the framework it came from. It lives with the models because it runs them; the backend factory
(:mod:`fusion_perception.backend_factory`) imports it lazily, so the ONNX Runtime path never loads
torch.

On CUDA, ``precision="fp16"`` runs under autocast (weights stay FP32, convolutions run in FP16);
``cuda_graphs=True`` captures one forward pass per input shape and replays it, which removes the
per-layer launch overhead that dominates a network this small.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendUnavailableError, ModelFormatError
from ..runtime.backend import Outputs, check_outputs
from ..runtime.model_info import OUTPUT_NAMES, ModelInfo
from .checkpoint import load_deployed

__all__ = ["TorchBackend"]


class TorchBackend:
    """A checkpoint run by PyTorch.

    Args:
        checkpoint: file written by ``models.checkpoint.save_deployed`` (or the trainer).
        device: "cuda", "cuda:N" or "cpu".
        precision: "fp16" (CUDA autocast) or "fp32".
        cuda_graphs: capture and replay CUDA graphs (CUDA only).
        threads: CPU intra-op threads (0 keeps torch's default).
        warmup: forward passes run at construction (cuDNN autotuning, graph capture).
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: Path | str,
        *,
        device: str = "cuda",
        precision: str = "fp16",
        cuda_graphs: bool = False,
        threads: int = 0,
        warmup: int = 2,
    ) -> None:
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"torch precision must be 'fp16' or 'fp32', got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"torch {torch.__version__} has no usable CUDA device")
        if self.device.type != "cuda" and (precision == "fp16" or cuda_graphs):
            raise BackendUnavailableError(
                "FP16 autocast and CUDA graphs need a CUDA device; use fp32 on the CPU"
            )
        if threads > 0:
            torch.set_num_threads(threads)
        self.model = load_deployed(checkpoint).to(self.device)
        self.info: ModelInfo = self.model.info
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.checkpoint = Path(checkpoint)
        self._lock = threading.Lock()
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_in: tuple[torch.Tensor, torch.Tensor] | None = None
        self._static_out: tuple[torch.Tensor, ...] | None = None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        w, h = self.info.input_size
        for _ in range(warmup):
            self.infer(np.full((1, 1, h, w), 0.5, np.float32), np.full((1, 3, h, w), 0.5, np.float32))

    def _forward(self, ir: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.precision == "fp16"
        ):
            return self.model(ir, visible)

    def _capture(self, ir: torch.Tensor, visible: torch.Tensor) -> None:
        """Record one forward pass at this input shape (warm-up on a side stream first, as required)."""
        static_in = (ir.clone(), visible.clone())
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(*static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(*static_in)
        self._graph, self._static_in, self._static_out = graph, static_in, static_out

    @torch.inference_mode()
    def _run(self, ir: np.ndarray, visible: np.ndarray) -> tuple[torch.Tensor, ...]:
        t_ir = torch.from_numpy(np.ascontiguousarray(ir, np.float32)).to(self.device, non_blocking=True)
        t_vis = torch.from_numpy(np.ascontiguousarray(visible, np.float32)).to(self.device, non_blocking=True)
        if not self.cuda_graphs:
            return self._forward(t_ir, t_vis)
        if self._static_in is None or self._static_in[0].shape != t_ir.shape:
            self._capture(t_ir, t_vis)
        else:
            self._static_in[0].copy_(t_ir)
            self._static_in[1].copy_(t_vis)
        self._graph.replay()  # type: ignore[union-attr]
        return self._static_out  # type: ignore[return-value]

    def infer(self, ir: np.ndarray, visible: np.ndarray) -> Outputs:
        if ir.ndim != 4 or visible.ndim != 4 or ir.shape[2:] != visible.shape[2:]:
            raise ModelFormatError(
                f"expected ir [N,1,H,W] and visible [N,3,H,W], got {ir.shape}, {visible.shape}"
            )
        with self._lock:
            values = self._run(ir, visible)
            outputs = {name: v.float().cpu().numpy() for name, v in zip(OUTPUT_NAMES, values, strict=True)}
        return check_outputs(outputs, ir, self.info)

    def close(self) -> None:
        with self._lock:
            self._graph = self._static_in = self._static_out = None
            self.model = None  # type: ignore[assignment]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

"""Data parallelism for the ``coe`` model under ``torchrun`` / ``accelerate launch``.

lm-eval gives each rank every N-th document and gathers results through the outer
model's ``all_gather`` / ``gather_object`` / ``barrier``; this mixin provides them with
accelerate, as lm-eval's own HF model does.
"""

from __future__ import annotations

import os
from typing import Any


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class DataParallelMixin:
    accelerator: Any = None

    def _setup_data_parallel(self) -> None:
        if launched_world_size() <= 1:
            return
        import torch
        from accelerate import Accelerator

        # without cpu=True accelerate stays single-process on a CPU-only machine
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        self._device = self.accelerator.device

    @property
    def device(self) -> Any:
        return getattr(self, "_device", None) or "cpu"

    def all_gather(self, tensor: Any) -> Any:
        return tensor if self.world_size <= 1 else self.accelerator.gather(tensor)

    def gather_object(self, obj: Any, dst: int = 0) -> Any:
        if self.world_size <= 1:
            return [obj]
        import torch.distributed

        result = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size <= 1:
            return [obj]
        import torch.distributed

        result: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(result, obj)
        return result

    def barrier(self) -> None:
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

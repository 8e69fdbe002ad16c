"""Run one expert in a worker process of its own, so that freeing it returns all its memory.

vLLM does not return GPU memory on ``del`` (vllm issues 6544, 18806, 21073); the
operating system does when the process that holds it exits. ``IsolatedExpert`` builds the
harness model inside a spawned worker and forwards method calls to it; ``close()`` ends
the worker. Requests and answers travel pickled through a pipe.
"""

from __future__ import annotations

import importlib
import multiprocessing
import traceback
from typing import Any

from benchcoe_plugins.core.errors import ExpertError
from benchcoe_plugins.experts.spec import ExpertSpec


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _serve(connection: Any, builder_path: str, spec: ExpertSpec, harness_args: dict[str, Any]) -> None:
    try:
        model = _import(builder_path)(spec, harness_args)
        connection.send(("ok", None))
    except BaseException:
        connection.send(("error", traceback.format_exc()))
        return
    while True:
        message = connection.recv()
        if message is None:
            return
        method, args = message
        try:
            value = getattr(model, method)
            connection.send(("ok", value(*args) if callable(value) else value))
        except BaseException:
            connection.send(("error", traceback.format_exc()))


class IsolatedExpert:
    """A proxy whose methods run in the worker; ``close()`` ends it and frees its memory."""

    def __init__(self, builder_path: str, spec: ExpertSpec, harness_args: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self.spec = spec
        self.process = context.Process(target=_serve, args=(child, builder_path, spec, harness_args),
                                       name=f"benchcoe-expert-{spec.name}", daemon=True)
        self.process.start()
        child.close()
        self._receive()

    def _receive(self) -> Any:
        try:
            status, value = self._connection.recv()
        except EOFError:
            raise ExpertError(f"the worker process of expert {self.spec.name!r} died "
                              f"(exit code {self.process.exitcode}); killed or out of memory?") from None
        if status == "error":
            raise ExpertError(f"expert {self.spec.name!r} failed in its worker process:\n{value}")
        return value

    def _call(self, method: str, *args: Any) -> Any:
        if not self.process.is_alive():
            raise ExpertError(f"the worker process of expert {self.spec.name!r} is not running")
        self._connection.send((method, args))
        return self._receive()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self._call(name, *args)

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._connection.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout=60)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self._connection.close()

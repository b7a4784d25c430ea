"""Model runtimes: the demo model, batching equality, the child process and its supervision."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from radraft.model_options import Device, Switch
from tests.support import wait_until
from worker.batcher import Batcher, GenerationTimeoutError
from worker.runtimes.base import (
    GenerationFailedError,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelLoadError,
)
from worker.runtimes.child import hf_arguments
from worker.runtimes.demo import build_demo_checkpoint
from worker.runtimes.hf import HFRuntime
from worker.runtimes.supervised import SupervisedRuntime


def requests(count: int, tokens: int = 24) -> list[GenerationRequest]:
    rng = np.random.default_rng(7)
    out = []
    for index in range(count):
        images = tuple(
            rng.integers(0, 255, size=(96, 80), dtype=np.uint8) for _ in range(1 + index % 2)
        )
        out.append(
            GenerationRequest(
                images,
                f"Given the indication: cough {index}, write a structured findings section for "
                "the CXR.",
                tokens,
            )
        )
    return out


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> HFRuntime:
    return HFRuntime(str(demo_model_dir), device=Device.CPU, demo=True)


def test_demo_checkpoint_is_deterministic(demo_model_dir: Path, tmp_path: Path) -> None:
    again = build_demo_checkpoint(tmp_path / "again")
    for path in sorted(demo_model_dir.iterdir()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_batched_greedy_drafts_equal_unbatched(runtime: HFRuntime) -> None:
    batch = requests(4)
    together = runtime.generate(batch)
    alone = [runtime.generate([request])[0] for request in batch]
    assert [r.text for r in together] == [r.text for r in alone]
    assert all(r.generated_tokens > 0 for r in together)
    assert {r.batch_size for r in together} == {4}
    assert len({r.text for r in together}) > 1, "different inputs should give different drafts"


def test_static_kv_cache_gives_the_same_drafts(runtime: HFRuntime, demo_model_dir: Path) -> None:
    static = HFRuntime(str(demo_model_dir), device=Device.CPU, demo=True, static_cache=Switch.ON)
    assert static.cache_options() == {"cache_implementation": "static", "disable_compile": True}
    assert runtime.cache_options() == {}, "auto: the static cache is for CUDA"
    batch = requests(3)
    assert [r.text for r in static.generate(batch)] == [r.text for r in runtime.generate(batch)]
    assert [r.text for r in static.generate(batch[:1])] == [runtime.generate(batch[:1])[0].text]


def test_compiled_decoder_gives_the_same_drafts(
    runtime: HFRuntime, demo_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The path GPU workers take by default (static cache + torch.compile), run on CPU."""
    caplog.set_level(logging.INFO, logger="worker.runtimes.hf")
    compiled = HFRuntime(
        str(demo_model_dir), device=Device.CPU, demo=True, compile_decoder=Switch.ON
    )
    assert compiled.compiled
    assert compiled.info.decoding["kv_cache"] == "static"
    assert compiled.info.decoding["compiled"] is True
    options = compiled.cache_options()
    assert options["cache_implementation"] == "static"
    assert options["compile_config"]._compile_all_devices is True
    assert "disable_compile" not in options
    compiled.warm_up(max_batch=4, image_size=96, max_new_tokens=24)
    assert "worker.compiled seconds=" in caplog.text
    assert "batch_sizes=1,4" in caplog.text
    for batch in (requests(4), requests(3), requests(1)):
        assert [r.text for r in compiled.generate(batch)] == [
            r.text for r in runtime.generate(batch)
        ]


def test_compilation_without_the_static_cache_is_refused(demo_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="RADRAFT_COMPILE_DECODER=on needs the static KV"):
        HFRuntime(
            str(demo_model_dir),
            device=Device.CPU,
            demo=True,
            compile_decoder=Switch.ON,
            static_cache=Switch.OFF,
        )


def test_batcher_groups_concurrent_requests(runtime: HFRuntime) -> None:
    batcher = Batcher(runtime, max_batch=8, wait_ms=200)
    futures = [batcher.submit(request) for request in requests(3)]
    results = [future.result(timeout=60) for future in futures]
    assert [r.batch_size for r in results] == [3, 3, 3]
    assert [r.text for r in results] == [r.text for r in runtime.generate(requests(3))]


def test_child_process_gives_the_same_drafts(demo_model_dir: Path, runtime: HFRuntime) -> None:
    child = SupervisedRuntime(
        python=Path(sys.executable), backend="hf", source=str(demo_model_dir), device=Device.CPU,
        demo=True, hf_options=hf_arguments(Switch.ON, Switch.AUTO, (4, 96, 24)),
    )  # fmt: skip
    try:
        assert child.info.demo is True
        assert child.info.decoding["kv_cache"] == "static", "the worker's settings reach the child"
        assert child.info.weights_hash == runtime.info.weights_hash
        batch = requests(3)
        assert [r.text for r in child.generate(batch)] == [r.text for r in runtime.generate(batch)]
    finally:
        child.close()


@pytest.mark.parametrize("failure", ["sigkill", "hang"])
def test_child_killed_or_hung_mid_batch_is_restarted_and_the_batch_completes(
    failure: str, demo_model_dir: Path, runtime: HFRuntime
) -> None:
    child = SupervisedRuntime(
        python=Path(sys.executable), backend="hf", source=str(demo_model_dir), device=Device.CPU,
        demo=True, batch_timeout=5 if failure == "hang" else 600,
    )  # fmt: skip
    # Long enough that the child is still writing when the saboteur strikes, on a fast machine
    # too (200 tokens took 0.16 s here, and the batch was done before a kill 0.2 s in).
    batch = requests(4, tokens=1000)
    first_pid = child.pid
    assert first_pid is not None

    def sabotage() -> None:
        assert child.in_flight.wait(timeout=30)
        time.sleep(0.05)
        os.kill(first_pid, signal.SIGKILL if failure == "sigkill" else signal.SIGSTOP)

    saboteur = threading.Thread(target=sabotage)
    saboteur.start()
    try:
        results = child.generate(batch)
        saboteur.join()
        assert child.restarts == 1
        assert child.pid != first_pid
        assert [r.text for r in results] == [r.text for r in runtime.generate(batch)]
    finally:
        child.close()
        if _alive(first_pid):
            os.kill(first_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class StuckRuntime:
    """Stands in for an in-process model that hangs on the GPU (which cannot be made to hang
    on demand here): its generate blocks until released."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.release = threading.Event()

    def generate(self, batch: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.release.wait(timeout=120)
        raise RuntimeError("released")

    def close(self) -> None:
        self.release.set()


def test_an_in_process_model_past_the_deadline_fails_its_batch_and_ends_the_worker(
    runtime: HFRuntime,
) -> None:
    stuck = StuckRuntime(runtime.info)
    hung = threading.Event()
    batcher = Batcher(stuck, max_batch=4, wait_ms=10, deadline_seconds=1.0, on_hung=hung.set)
    started = time.monotonic()
    futures = [batcher.submit(request) for request in requests(2)]
    for future in futures:
        with pytest.raises(GenerationTimeoutError, match="longer than 1 s"):
            future.result(timeout=30)
    assert time.monotonic() - started < 5
    assert hung.wait(timeout=5), "the worker is told to end (an in-process model cannot stop)"
    assert batcher.hung
    with pytest.raises(GenerationFailedError, match="restarting"):
        batcher.submit(requests(1)[0]).result(timeout=5)
    stuck.close()


def test_a_model_child_past_the_deadline_fails_its_batch_and_is_restarted(
    demo_model_dir: Path, runtime: HFRuntime
) -> None:
    child = SupervisedRuntime(
        python=Path(sys.executable), backend="hf", source=str(demo_model_dir), device=Device.CPU,
        demo=True, batch_timeout=600,
    )  # fmt: skip
    batcher = Batcher(child, max_batch=4, wait_ms=10, deadline_seconds=3.0)
    first_pid = child.pid
    assert first_pid is not None

    def stop_the_child() -> None:
        assert child.in_flight.wait(timeout=30)
        os.kill(first_pid, signal.SIGSTOP)  # a GPU hang, as the worker sees it

    saboteur = threading.Thread(target=stop_the_child)
    saboteur.start()
    try:
        with pytest.raises(GenerationTimeoutError):
            batcher.generate(requests(1, tokens=200)[0])
        saboteur.join()
        wait_until(lambda: child.pid != first_pid, timeout=60, what="a fresh model child")
        batch = requests(2)
        assert [batcher.generate(r).text for r in batch] == [
            r.text for r in runtime.generate(batch)
        ]
        assert not batcher.hung
    finally:
        batcher.close()
        if _alive(first_pid):
            os.kill(first_pid, signal.SIGKILL)

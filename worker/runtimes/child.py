"""Entry point of a model child process: load one runtime, answer batch frames until EOF.

Started by ``worker.runtimes.supervised`` with its own Python (for CheXagent, a virtual
environment with transformers 4.40.0). It imports only the runtime it serves, the protocol and
``radraft.errors``, so that environment needs torch, transformers, numpy and Pillow only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from typing import Any

from radraft.model_options import Device, Switch
from worker.runtimes.protocol import (
    ProtocolError,
    decode_requests,
    encode_results,
    read_frame,
    write_frame,
)


def load(arguments: argparse.Namespace) -> Any:
    """Load the runtime named by ``arguments.backend`` (an ``hf`` one compiles here too)."""
    if arguments.backend == "chexagent":
        from worker.runtimes.chexagent import CheXagentRuntime

        return CheXagentRuntime(arguments.source, device=arguments.device)
    from worker.runtimes.hf import HFRuntime

    runtime = HFRuntime(
        arguments.source,
        device=arguments.device,
        demo=arguments.demo,
        name=os.environ.get("RADRAFT_MODEL_NAME"),
        static_cache=arguments.static_cache,
        compile_decoder=arguments.compile_decoder,
    )
    if arguments.warm_up:
        max_batch, image_size, max_new_tokens = (int(n) for n in arguments.warm_up.split(","))
        runtime.warm_up(max_batch, image_size, max_new_tokens)
    return runtime


def hf_arguments(
    static_cache: Switch, compile_decoder: Switch, warm_up: tuple[int, int, int]
) -> list[str]:
    """Command-line options that carry the worker's generation settings to an ``hf`` child."""
    return [
        "--static-cache", static_cache,
        "--compile-decoder", compile_decoder,
        "--warm-up", ",".join(str(n) for n in warm_up),
    ]  # fmt: skip


def main() -> None:
    """Serve frames on stdin/stdout; the first reply carries the model's identity."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True, choices=["hf", "chexagent"])
    parser.add_argument("--source", required=True)
    parser.add_argument("--device", type=Device, choices=list(Device), default=Device.AUTO)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--static-cache", type=Switch, choices=list(Switch), default=Switch.AUTO)
    parser.add_argument("--compile-decoder", type=Switch, choices=list(Switch), default=Switch.AUTO)
    parser.add_argument("--warm-up", default="", help="max_batch,image_size,max_new_tokens")
    arguments = parser.parse_args()
    requests_in = sys.stdin.buffer
    replies_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # library prints must never corrupt the protocol stream
    try:
        runtime = load(arguments)
    except Exception as error:
        write_frame(replies_out, {"ok": False, "error": f"{type(error).__name__}: {error}"})
        return
    write_frame(replies_out, {"ok": True, "info": dataclasses.asdict(runtime.info)})
    while True:
        try:
            header, payload = read_frame(requests_in)
        except ProtocolError:
            return
        try:
            results = runtime.generate(decode_requests(header, payload))
            write_frame(replies_out, encode_results(results))
        except Exception as error:
            traceback.print_exc()
            write_frame(replies_out, {"ok": False, "error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()

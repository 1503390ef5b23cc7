"""Where predict.py's time goes: CPU seconds per phase, summed over its threads, and the start-up's wall time.

    python benchmarks/predict_phases.py --checkpoint handwriting_recognizer_best.pth --format tsv path/to/pngs/

Runs ``predict.main`` with the given arguments (its output discarded) once, with the functions of each phase
wrapped to add up their threads' CPU time (``time.thread_time``): image decoding, preprocessing, the ONNX network,
greedy or beam search, confidences. ONNX Runtime's own worker threads are not counted; PyTorch's network
(``--onnx none``) is not wrapped. Run it once per setting, settings in turn, on a quiet machine.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import contextlib  # noqa: E402 (imports after the clock starts: they are part of the start-up)
import io  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from htr import inference  # noqa: E402
from htr.cli import read as predict  # noqa: E402
from htr.reading import decode, onnx_network, preprocess  # noqa: E402

seconds: dict[str, float] = {}
lock = threading.Lock()


def count_cpu(owner: object, name: str, phase: str) -> None:
    """Replace ``owner.name`` with a wrapper adding the calling thread's CPU time to ``seconds[phase]``."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                seconds[phase] = seconds.get(phase, 0.0) + time.thread_time() - start

    setattr(owner, name, timed)


def main() -> None:
    count_cpu(preprocess, "load_image", "image decoding")
    count_cpu(inference.Recognizer, "prepare_image", "image decoding + preprocessing")
    count_cpu(onnx_network.OnnxNetwork, "__call__", "network (ONNX)")
    count_cpu(decode.Decoder, "paths", "greedy or beam search")
    count_cpu(inference, "confidences", "confidences")
    start_up = {}
    construct = inference.Recognizer.__init__

    def timed_init(self, *args, **kwargs):
        construct(self, *args, **kwargs)
        start_up.setdefault("seconds", time.perf_counter() - START)

    inference.Recognizer.__init__ = timed_init
    with contextlib.redirect_stdout(io.StringIO()):
        predict.main(sys.argv[1:])
    wall = time.perf_counter() - START
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds["preprocessing"] = seconds.pop("image decoding + preprocessing", 0.0) - seconds.get("image decoding", 0.0)
    print(f"predict.py {' '.join(sys.argv[1:])}")
    print(f"  wall {wall:.2f} s, CPU {usage.ru_utime + usage.ru_stime:.2f} s, "
          f"start-up (imports, model, LM, export) {start_up.get('seconds', float('nan')):.2f} s wall")  # fmt: skip
    for phase, cpu in seconds.items():
        print(f"  {phase:24s} {cpu:6.2f} s CPU")


if __name__ == "__main__":
    main()

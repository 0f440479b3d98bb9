"""``edge-runtime``: the command line. Every subcommand is ``main(argv)``-testable.

Runtime subcommands (edge box, no torch) come from :data:`COMMANDS`: each names a module with
``add_arguments(parser)`` and ``run(args) -> int``; a module that is not there is not offered.
Offline subcommands (``pip install ".[train]"``): ``train``, ``export``, ``split``, ``finetune``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from edge_runtime import __version__
from edge_runtime.errors import EdgeRuntimeError

__all__ = ["main", "build_parser"]

log = logging.getLogger("edge_runtime")

_OFFLINE = {"train", "export", "split", "finetune", "correct", "retrain"}

# name -> (module with add_arguments / run, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge_runtime.service", "run the edge pipeline (source -> importance -> reduce -> send)"),
    "receive": ("edge_runtime.receiver", "run the receiver (decode -> back half -> result sinks)"),
    "keys": ("edge_runtime.keys", "generate and list CURVE key pairs"),
    "train-dict": ("edge_runtime.codec.dictionary", "train a zstd dictionary on quantized feature maps"),
}


def _offline_module():
    try:
        import models.cli
    except ImportError as e:  # torch / onnx missing on an edge box
        raise SystemExit(
            f'this subcommand needs the offline extra ({e.name} is not installed): pip install ".[train]"'
        ) from None
    return models.cli


def _add_offline(sub) -> None:
    """Register the offline subcommands' arguments without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec("models.cli")
    if spec is None:
        return
    # models.cli imports only argparse at module level; the torch imports are inside its commands.
    import models.cli as mc

    mc.add_train_args(sub.add_parser("train", help="train the ABN / plain network (needs .[train])"))
    mc.add_export_args(sub.add_parser("export", help="export a checkpoint as a bundle (needs .[train])"))
    mc.add_split_args(
        sub.add_parser("split", help="split any ONNX classifier into a bundle (needs .[train])")
    )
    mc.add_finetune_args(
        sub.add_parser("finetune", help="masking- and quantization-aware fine-tuning (needs .[train])")
    )
    mc.add_correct_args(sub.add_parser("correct", help="web editor for ABN attention maps (needs .[train])"))
    mc.add_retrain_args(sub.add_parser("retrain", help="fine-tune an ABN on teacher maps (needs .[train])"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-runtime", description="Importance-guided split inference at the edge"
    )
    p.add_argument("--version", action="version", version=f"edge-runtime {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="verify a bundle and print its manifest summary")
    info.add_argument(
        "bundle", nargs="?", help="bundle folder (default: the bundle shipped with the package)"
    )
    info.add_argument("--json", action="store_true", help="print the whole manifest as JSON")

    from edge_runtime.demo import add_arguments as add_demo_arguments

    add_demo_arguments(sub.add_parser("demo", help="a receiver and an edge on loopback, with the defaults"))

    import importlib
    import importlib.util

    for name, (module, help_) in COMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        mod = importlib.import_module(module)
        sp = sub.add_parser(name, help=help_)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)

    _add_offline(sub)
    return p


def _cmd_info(args) -> int:
    from edge_runtime.bundle import load_bundle

    b = load_bundle(args.bundle)
    m = b.manifest
    if args.json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return 0
    print(f"bundle      {b.path}")
    print(f"model       {b.model_name} ({m.get('arch', '?')})")
    print(f"model id    {b.model_id}")
    print(f"classes     {len(b.classes)}: {', '.join(b.classes)}")
    print(f"input       {b.input.name} {b.input.layout} {b.input.color} {b.input.size[0]}x{b.input.size[1]}")
    print(f"split       {b.split_name} {list(b.split_shape)} {m['split']['dtype']}")
    for name, g in sorted(b.graphs.items()):
        print(f"graph       {name:<15} {g['file']:<22} {g['inputs']} -> {g['outputs']}")
    print(f"importance  {', '.join(sorted(b.importance)) or 'none'}")
    if m.get("metrics"):
        print(f"metrics     {m['metrics']}")
    b.warmup()
    print("all graphs load and run: OK")
    return 0


def _cmd_demo(args) -> int:
    from edge_runtime.demo import run_demo

    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    t0 = time.perf_counter()
    try:
        if args.command in _OFFLINE:
            return getattr(_offline_module(), f"cmd_{args.command}")(args)
        if hasattr(args, "_run"):
            return args._run(args)
        return {"info": _cmd_info, "demo": _cmd_demo}[args.command](args)
    except EdgeRuntimeError as e:
        print(f"edge-runtime {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        log.debug("%s took %.2f s", args.command, time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())

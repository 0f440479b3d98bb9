"""``edge-runtime``: the command line. Every subcommand is ``main(argv)``-testable.

Runtime subcommands (edge box, no torch) come from :data:`COMMANDS`: each names a module with
``add_arguments(parser)`` and ``run(args) -> int``; a module that is not there is not offered.
Offline subcommands (``pip install ".[train]"``): ``train``, ``export``, ``split``, ``finetune``.

Errors are handled in one place, :func:`main`: whatever a subcommand raises for a reason the user
can fix (a missing extra, a missing or wrong path, a bad value, see :func:`_user_error`) becomes
one ``edge-runtime CMD: error: ...`` line and exit status 2, never a traceback (``--verbose``
adds the traceback). Third-party INFO logging (the ONNX exporter, torch, numba) stays quiet unless
``--verbose``. Every option's help shows its default (:class:`_HelpFormatter`).
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

#: Loggers of libraries that log at INFO about their own internals (an export printed 274 such
#: lines); they show only with --verbose.
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch", "numba", "matplotlib", "PIL", "urllib3", "filelock")

#: Top-level modules of the runtime requirements (setup.py's RUNTIME).
_RUNTIME = {
    "numpy",
    "numba",
    "llvmlite",
    "onnxruntime",
    "zstandard",
    "cv2",
    "zmq",
    "prometheus_client",
    "pycocotools",
}

#: Top-level modules of the ``train`` extra: an ImportError of one of them means "install it".
_TRAIN_EXTRA = {"torch", "onnx", "onnxscript", "onnx_ir", "onnx2torch", "tqdm", "flask", "werkzeug"}

# name -> (module with add_arguments / run, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge_runtime.service", "run the edge pipeline (source -> importance -> reduce -> send)"),
    "receive": ("edge_runtime.receiver", "run the receiver (decode -> back half -> result sinks)"),
    "keys": ("edge_runtime.keys", "generate and list CURVE key pairs"),
    "train-dict": ("edge_runtime.codec.dictionary", "train a zstd dictionary on quantized feature maps"),
    "warmup": ("edge_runtime.warmup", "compile the kernels a config uses into Numba's cache, ahead of time"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default.

    No default (None), a store_true flag (False) and an empty list say nothing worth printing.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (
            "(default" in text
            or "%(default)" in text
            or d is None
            or d is False
            or d == []
            or d is argparse.SUPPRESS
        ):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        shown = " ".join(map(str, d)) if isinstance(d, list | tuple) else d
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """Every (sub)parser gets :class:`_HelpFormatter`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _user_error(e: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a bug (a traceback)."""
    if isinstance(e, EdgeRuntimeError):
        return str(e)
    if isinstance(e, ImportError):
        top = (e.name or "").split(".")[0]
        if top in _TRAIN_EXTRA:
            return f'this command needs the offline extra ({top} is not installed): pip install ".[train]"'
        if top in ("playwright", "matplotlib", "pytest"):
            return f'this command needs the dev extra ({top} is not installed): pip install ".[dev]"'
        if top in _RUNTIME:
            return f"edge-runtime is not completely installed ({top} is missing): pip install ."
        return None
    if isinstance(e, OSError) and e.filename is not None:
        what = {
            FileNotFoundError: "does not exist",
            NotADirectoryError: "is not a folder",
            IsADirectoryError: "is a folder, not a file",
            PermissionError: "permission denied",
        }.get(type(e), e.strerror or str(e))
        return f"{e.filename}: {what}"
    if isinstance(e, FileNotFoundError | NotADirectoryError | PermissionError):
        return str(e)
    if isinstance(e, ValueError):  # bad values in user data or options (messages name them)
        return str(e)
    return None


def _offline_module():
    import edge_runtime.models.cli as mc  # imports no torch; the commands do (main handles an ImportError)

    return mc


def _add_offline(sub) -> None:
    """Register the offline subcommands' arguments without importing torch."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("edge_runtime.models.cli")
    except ModuleNotFoundError:  # an install without the offline package
        spec = None
    if spec is None:
        return
    # models.cli imports only argparse at module level; the torch imports are inside its commands.
    import edge_runtime.models.cli as mc

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


def _command_of(argv: list[str] | None) -> str | None:
    """The subcommand named in ``argv`` (None: none, or ``--help`` of the whole program)."""
    args = sys.argv[1:] if argv is None else argv
    for a in args:
        if a in ("-h", "--help", "--version"):
            return None
        if not a.startswith("-"):
            return a
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, the other runtime subcommands are listed without importing
    their modules (the receiver's import alone took a quarter of a second before the demo said
    anything)."""
    p = _Parser(prog="edge-runtime", description="Importance-guided split inference at the edge")
    p.add_argument("--version", action="version", version=f"edge-runtime {__version__}")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, third-party logs and tracebacks"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
        if only is not None and name != only:  # (find_spec would import the parent package)
            sub.add_parser(name, help=help_)
            continue
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
    print(f"task        {b.task}")
    if b.detection is not None:
        d = b.detection
        print(
            f"detection   boxes {d.box_format} (input pixels), score > {d.score_threshold}, NMS per class at "
            f"IoU {d.nms_iou}, top {d.pre_nms_top_k} before NMS, at most {d.max_detections} per frame"
        )
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


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    # A sub-parser's bad option exits 2 with argparse's own "error:" line.
    args = build_parser(only=_command_of(argv)).parse_args(argv)
    _configure_logging(args.verbose)
    t0 = time.perf_counter()
    try:
        if args.command in _OFFLINE:
            return getattr(_offline_module(), f"cmd_{args.command}")(args)
        if hasattr(args, "_run"):
            return args._run(args)
        return {"info": _cmd_info, "demo": _cmd_demo}[args.command](args)
    except KeyboardInterrupt:
        print(f"edge-runtime {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # raise SystemExit("message") in a command: a user error as well
        if isinstance(e.code, str):
            print(f"edge-runtime {args.command}: error: {e.code}", file=sys.stderr)
            return 2
        raise
    except Exception as e:
        message = _user_error(e)
        if message is None:
            raise
        if args.verbose:
            log.exception("%s failed", args.command)
        print(f"edge-runtime {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        log.debug("%s took %.2f s", args.command, time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())

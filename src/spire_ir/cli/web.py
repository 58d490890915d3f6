"""``spire web``: the restoration studio in the browser."""

from __future__ import annotations

import argparse

from spire_ir.cli.common import CommandError, load_pipeline_for


def cmd_web(args: argparse.Namespace) -> int:
    try:
        from spire_ir import web
    except ImportError as error:  # pragma: no cover - depends on the install
        raise CommandError(f"spire web needs the web extra: pip install 'spire-ir[web]' ({error})") from error
    import os

    os.environ["GRADIO_ANALYTICS_ENABLED"] = str(bool(args.analytics))  # before gradio is imported
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise CommandError("spire web needs Gradio: pip install 'spire-ir[web]'") from error
    pipe, _ = load_pipeline_for(args)
    print(f"SPIRE studio on http://{args.host}:{args.port} (Ctrl+C to stop)")
    web.launch(pipe, model_name=str(args.model), host=args.host, port=args.port, max_pixels=args.max_pixels,
               max_file_mb=args.max_file_mb, analytics=args.analytics, queue_size=args.queue_size)  # fmt: skip
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("web", help="the interactive restoration studio in the browser (Gradio)")
    p.add_argument(
        "--model",
        default=None,
        help="a SPIRE pipeline folder (default: the built-in spire-tiny, when installed)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--max-pixels", type=int, default=2048 * 2048,
        help="refuse larger uploads, checked from the header before decoding (default 2048²)",
    )
    p.add_argument("--max-file-mb", type=float, default=25, help="refuse larger uploads, in MiB (default 25)")
    p.add_argument(
        "--queue-size", type=int, default=16, help="requests that may wait while one runs (default 16)"
    )
    p.add_argument(
        "--analytics", action="store_true",
        help="turn Gradio's usage analytics on (default off: the studio makes no outbound connection)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), default=None, help="default fp16 on CUDA, else fp32"
    )
    p.set_defaults(func=cmd_web, progress=False)

"""``htr demo`` (``python -m htr.demo``): its command line.

What it does: the docstring of `htr.demo`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import os
import sys

from htr import demo as library
from htr.cli.options import add_checkpoint_argument, command_name
from htr.demo import DemoReader, build_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_name("htr.demo"), description=library.__doc__.split("\n\n")[0])
    add_checkpoint_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing sent anywhere
    try:
        import gradio as gr
    except ImportError:
        print("error: the demo needs Gradio: pip install -r requirements-demo.txt", file=sys.stderr)
        return 2
    try:
        reader = DemoReader(args.checkpoint, args.device)
    except (ValueError, OSError) as error:
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 2
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # fmt: skip  # no web fonts: offline
    build_app(reader).queue().launch(server_name=args.host, server_port=args.port, share=args.share, theme=theme,
                                     inbrowser=False, show_error=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

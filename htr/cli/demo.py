"""A local web page to try the recognizer: upload a photo or scan of a line or a page, or write a line by hand.

    pip install -r requirements-demo.txt
    python -m htr.demo                      # http://127.0.0.1:7860
    python -m htr.demo --checkpoint models/my-model --port 8080

Shows the text, each line's box on the image with its confidence, the less confident words marked, and the
result as JSON, PAGE XML and ALTO files to download. Runs offline (no fonts or scripts fetched at run time);
``--share`` (a public gradio.live link) stays off unless asked for.
"""

from __future__ import annotations

import argparse
import os
import sys

from htr.cli.options import add_checkpoint_argument, command_name
from htr.demo import DemoReader, build_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_name("htr.demo"), description=__doc__.split("\n\n")[0])
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

"""`kfcn serve-web DIR`: serves a page that `kfcn export --format web` wrote, on localhost by default.

A few lines over Python's `http.server`, importing nothing heavy (no Keras): it starts at once.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

PAGE_CONTRACT_FILE = "model.json"  # kfcn.export.web.PAGE_CONTRACT_FILE (not imported: it loads Keras)


def register(commands):
    text = "serve a folder written by `kfcn export --format web` (Python's http.server; localhost by default)"
    sub = commands.add_parser("serve-web", help=text, description=text)
    sub.add_argument("folder", help="the page's folder")
    sub.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)"
    )
    sub.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    sub.set_defaults(run=run, needs_backend=False)


def run(args):
    server = serve(args.folder, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {args.folder} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve(folder, host="127.0.0.1", port=8000):
    """An HTTP server of `folder`, bound to `host` and `port` (0: any free port), not yet serving.

    Localhost by default: the page is not exposed to the network unless asked. Files go
    out with the WebAssembly type and `Cache-Control: no-store`, so a re-exported page
    is reloaded. Call `serve_forever()` on the result.

    Raises:
        FileNotFoundError: `folder` is not a page of `kfcn export --format web`.

    Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.json").write_text("{}")
    >>> server = serve(folder, port=0)
    >>> server.server_address[0]
    '127.0.0.1'
    >>> server.server_close()
    """
    folder = Path(folder)
    if not (folder / PAGE_CONTRACT_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} has no {PAGE_CONTRACT_FILE}, so it is not a page of `kfcn export --format web`; write one "
            "with `kfcn export MODEL --format web --output FOLDER`."
        )
    handler = functools.partial(_PageHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer((host, port), handler)


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

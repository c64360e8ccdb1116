"""A Quart app: text, JSON and a POST echo.

pip install quart
ferrule examples.quart_app:app      # from the repository root
python examples/quart_app.py        # PORT=9000 python examples/quart_app.py
"""

from __future__ import annotations

import os

from quart import Quart, Response, request

app = Quart(__name__)


@app.before_serving
async def startup() -> None:
    # Runs in ferrule's lifespan startup.
    app.config["FERRULE_STARTED"] = True


@app.route("/")
async def index() -> str:
    return "Hello, world!"


@app.route("/json")
async def json_endpoint() -> dict[str, object]:
    return {
        "hello": "world",
        "started": app.config.get("FERRULE_STARTED", False),
        "args": request.args.to_dict(),
    }


@app.route("/echo", methods=["POST"])
async def echo() -> Response:
    body = await request.get_data()
    content_type = request.headers.get("content-type", "application/octet-stream")
    return Response(body, content_type=content_type)


if __name__ == "__main__":
    import ferrule

    ferrule.run(app, port=int(os.environ.get("PORT", "8000")))

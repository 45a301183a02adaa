"""Error responses: every malformed request is a 422 whose `detail` says what is wrong."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException


async def _bad_body_as_422(request: Request, exc: Exception) -> Response:
    # FastAPI answers 400 "There was an error parsing the body" for bodies it cannot decode
    # (not UTF-8, ...) but 422 for bodies that are not JSON; routes here never raise 400, so
    # any 400 is a body FastAPI could not read: answer like every other malformed input.
    assert isinstance(exc, HTTPException)  # noqa: S101  registered for HTTPException only
    if exc.status_code == status.HTTP_400_BAD_REQUEST:
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={
                "detail": [
                    {
                        "type": "body_not_decodable",
                        "loc": ["body"],
                        "msg": f"request body could not be read as UTF-8 JSON ({exc.detail})",
                    }
                ]
            },
        )
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _bad_body_as_422)

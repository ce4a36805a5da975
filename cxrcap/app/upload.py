"""The X-ray upload box: Gradio's file box, minus the empty file it leaves behind per upload.

`gr.File(type="filepath")` preprocesses each upload by creating an empty
`tempfile.NamedTemporaryFile(delete=False)` in Gradio's cache that it never uses nor deletes
(gradio 6.31, `components/file.py`): one 0-byte file per request, for as long as the server
runs. This box hands the handler the upload's path and creates nothing.

An API client that sends something else than a file (a plain path string, a number) is told to
use `handle_file`: Gradio's own refusal is a pydantic error, which reaches the client only as a
generic "the upstream Gradio app has raised an exception".
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData
from pydantic import ValidationError

NOT_A_FILE = ("The X-ray must be sent as a file, not as a {}: with gradio_client, "
              "`Client(url).predict(handle_file(\"xray.png\"), ...)` (from gradio_client import handle_file).")


class XrayFileData(FileData):
    """A chest X-ray file (PNG, JPEG or DICOM), sent with gradio_client's handle_file(path)."""

    # Gradio's FileData, refusing with NOT_A_FILE a payload that is no file. The docstring above
    # is what the app's API page says of the parameter.

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):
        # Gradio calls this on every upload before its preprocessing; a gr.Error raised inside
        # a pydantic validator would be wrapped into a ValidationError, hence here.
        if isinstance(obj, (dict, FileData)):
            try:
                return super().model_validate(obj, *args, **kwargs)
            except ValidationError:  # a dict that is no file data (no path, no file meta)
                pass
        raise gr.Error(NOT_A_FILE.format(type(obj).__name__), print_exception=False)


def xray_upload(**kwargs) -> gr.File:
    """A `gr.File` whose preprocessing returns the path of the upload in Gradio's cache (which
    Gradio has already checked lies there), nothing more.

    Set on the instance: a subclass of a Gradio component makes Gradio write a `.pyi` stub
    beside its source file when the class is defined.
    """
    box = gr.File(**kwargs)
    box.data_model = XrayFileData

    def preprocess(payload: FileData | None) -> str | None:
        return None if payload is None else payload.path

    box.preprocess = preprocess
    return box

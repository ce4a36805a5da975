"""The X-ray upload box: Gradio's file box, minus the empty file it leaves behind per upload.

`gr.File(type="filepath")` preprocesses each upload by creating an empty
`tempfile.NamedTemporaryFile(delete=False)` in Gradio's cache that it never uses nor deletes
(gradio 6.31, `components/file.py`): one 0-byte file per request, for as long as the server
runs. This box hands the handler the upload's path and creates nothing.
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData


def xray_upload(**kwargs) -> gr.File:
    """A `gr.File` whose preprocessing returns the path of the upload in Gradio's cache (which
    Gradio has already checked lies there), nothing more.

    Set on the instance: a subclass of a Gradio component makes Gradio write a `.pyi` stub
    beside its source file when the class is defined.
    """
    box = gr.File(**kwargs)

    def preprocess(payload: FileData | None) -> str | None:
        return None if payload is None else payload.path

    box.preprocess = preprocess
    return box

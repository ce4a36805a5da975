"""Inputs of the endpoints only API clients call (hidden in the page): what a client sends is
checked as it arrives, with a message naming the argument and the fix.

Gradio's own components would turn anything into text (a list of ground truths becomes the text
"['a', 'b']") or fail inside their preprocessing on a wrong type ("abc" beams), which a
gradio_client user reads only as "the upstream Gradio app has raised an exception".
"""

from __future__ import annotations

import gradio as gr


def text_input(name: str, **kwargs) -> gr.Textbox:
    """A Textbox for the argument `name`: text or None passes, anything else is refused."""
    box = gr.Textbox(label=name, **kwargs)

    def preprocess(payload):
        if payload is None or isinstance(payload, str):
            return payload
        raise gr.Error(f"{name} must be text (a string); got a {type(payload).__name__}.", print_exception=False)

    box.preprocess = preprocess  # on the instance: a subclass would make Gradio write a .pyi stub
    return box


def whole_number_input(name: str, lowest: int, highest: int, **kwargs) -> gr.Number:
    """A Number for the argument `name`: a whole number from `lowest` to `highest` (2.0 is 2)."""
    box = gr.Number(label=name, minimum=lowest, maximum=highest, precision=0, **kwargs)

    def preprocess(payload) -> int:
        if isinstance(payload, (int, float)) and not isinstance(payload, bool) and float(payload).is_integer() \
                and lowest <= payload <= highest:
            return int(payload)
        raise gr.Error(f"{name} must be a whole number from {lowest} to {highest}; got {payload!r:.40}.",
                       print_exception=False)

    box.preprocess = preprocess
    return box

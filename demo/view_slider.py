"""The Compare tab's crop and zoom sliders, in a module of their own: Gradio writes a type stub (view_slider.pyi)
beside the module that subclasses one of its components, copying the whole module once."""

from __future__ import annotations

import gradio as gr

from demo.crops import snap


class ViewSlider(gr.Slider):
    """A crop or zoom slider whose typed number is clamped to its range and rounded to its step, as the views use it:
    Gradio's own refuses a number beyond the range with an error, and passes an empty box as None and a fractional
    zoom as it is."""

    is_template = True  # drawn by Gradio's slider

    def preprocess(self, payload: float | None) -> float:
        return snap(payload, self.minimum, self.maximum, self.step)

    def shown(self, payload: float | None) -> float | dict:
        """The number used, to show in place of a typed one that differs from it (else the number stays)."""
        used = self.preprocess(payload)
        return gr.skip() if payload == used else used

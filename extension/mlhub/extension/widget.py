"""The "Publish model" panel: ``mlhub.publish_panel()`` in a cell, pick a model, click.

The panel is ``mlhub.publish`` with a face: it offers the models and tables it finds in the
namespace, pre-fills a valid name, validates it as you type, and runs the publish in a thread
so the progress bar moves while the kernel stays responsive. Every part carries a stable CSS
class (``mlhub-*``) so browser tests and docs can point at it.
"""

import html
import re
import threading

import ipywidgets as widgets

from mlhub.bundle import validate_name
from mlhub.errors import MlhubError
from mlhub.extension.client import publish
from mlhub.extension.namespace import (
    caller_namespace,
    find_examples,
    find_models,
    suggest_example,
    suggest_name,
)
from mlhub.extension.progress import overall
from mlhub.extension.settings import MlhubExtension

NO_EXAMPLE = "(no example)"
NO_VALIDATION = "(the example only)"
GIVEN_EXAMPLE = "(the example given)"
VALIDATE_HELP = (
    "a table of held-out rows: before the model takes traffic, the served model must answer "
    "up to 1,000 of them as it does here"
)
HELD_OUT = re.compile(r"test|valid|val\b|holdout", re.I)  # names a held-out table goes by
NO_MODELS = "no models found: train one (any object with predict) and click refresh"


def _styled(widget, css_class, **layout):
    widget.add_class(css_class)
    for key, value in layout.items():
        setattr(widget.layout, key, value)
    return widget


class PublishPanel(widgets.VBox):
    """The panel; its parts are attributes so tests drive it like a user would."""

    # A plain HTML output beside the panel (an IPython display handle, set by publish_panel):
    # the result is written there too, so the saved notebook shows the endpoint when no kernel
    # runs the panel any more (a widget alone then shows "Loading widget...").
    record = None

    def __init__(self, namespace, example=None, **kwargs):
        self.namespace = namespace
        self.given_example = example
        self.thread = None
        self._busy = False
        self._settings = MlhubExtension()

        self.model_select = _styled(widgets.Dropdown(description="Model"), "mlhub-model-select")
        self.refresh_button = _styled(
            widgets.Button(icon="refresh", tooltip="look for models again"),
            "mlhub-refresh",
            width="3em",
        )
        self.name_text = _styled(
            widgets.Text(description="Name", placeholder="e.g. defect-rf"), "mlhub-model-name"
        )
        self.name_message = _styled(widgets.HTML(), "mlhub-name-message")
        self.example_select = _styled(
            widgets.Dropdown(description="Example"), "mlhub-example-select"
        )
        # rows the served model must answer as this one does before it takes traffic
        self.validate_select = _styled(
            widgets.Dropdown(description="Check with", tooltip=VALIDATE_HELP),
            "mlhub-validate-select",
        )
        self.publish_button = _styled(
            widgets.Button(description="Publish", button_style="primary", icon="cloud-upload"),
            "mlhub-publish-button",
        )
        self.progress = _styled(
            widgets.FloatProgress(value=0.0, min=0.0, max=1.0), "mlhub-progress", display="none"
        )
        self.status = _styled(widgets.HTML(), "mlhub-status")
        self.endpoint = _styled(widgets.HTML(), "mlhub-endpoint", display="none")
        self.snippets = _styled(widgets.HTML(), "mlhub-snippets", display="none")
        self.error = _styled(widgets.HTML(), "mlhub-error", display="none")

        super().__init__(
            children=[
                widgets.HTML("<b>Publish model</b>"),
                widgets.HBox([self.model_select, self.refresh_button]),
                widgets.HBox([self.name_text, self.name_message]),
                self.example_select,
                self.validate_select,
                widgets.HBox([self.publish_button, self.progress, self.status]),
                self.endpoint,
                self.snippets,
                self.error,
            ],
            **kwargs,
        )
        self.add_class("mlhub-publish-panel")

        self.model_select.observe(self._model_changed, names="value")
        self.name_text.observe(self._name_changed, names="value")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.publish_button.on_click(lambda _button: self.start())
        self.refresh()

    # ------------------------------------------------------------ choices

    def refresh(self):
        """Look for models and example tables in the namespace again, keeping the choices."""
        models = find_models(self.namespace)
        self._examples = find_examples(self.namespace)
        if self.given_example is not None:
            self._examples = {GIVEN_EXAMPLE: self.given_example, **self._examples}
        chosen_example = self.example_select.value
        self.example_select.options = [NO_EXAMPLE, *self._examples]
        self.example_select.value = (
            chosen_example if chosen_example in self._examples else NO_EXAMPLE
        )
        chosen_check = self.validate_select.value
        self.validate_select.options = [NO_VALIDATION, *self._examples]
        self.validate_select.value = (
            chosen_check if chosen_check in self._examples else NO_VALIDATION
        )
        chosen_model = self.model_select.value
        self.model_select.options = list(models)
        self.model_select.value = (
            chosen_model if chosen_model in models else next(iter(models), None)
        )
        if not models:
            self._show_status(NO_MODELS)
        elif html.escape(NO_MODELS) in self.status.value:
            self._show_status("")
        self._update_button()

    def _model_changed(self, change):
        old, new = change["old"], change["new"]
        if new is None:
            return
        if not self.name_text.value or self.name_text.value == suggest_name(old or ""):
            self.name_text.value = suggest_name(new)
        if self.given_example is not None:
            self.example_select.value = GIVEN_EXAMPLE
        elif self.example_select.value == NO_EXAMPLE:
            found = suggest_example(self.namespace.get(new), self._examples)
            self.example_select.value = found or NO_EXAMPLE
        if self.validate_select.value == NO_VALIDATION:
            held_out = {k: v for k, v in self._examples.items() if HELD_OUT.search(k)}
            found = suggest_example(self.namespace.get(new), held_out)
            self.validate_select.value = found or NO_VALIDATION
        self._update_button()

    def _name_changed(self, change):
        self._update_button()

    def _name_problem(self):
        try:
            validate_name(self.name_text.value)
        except MlhubError as exc:
            return exc.message
        return None

    def _update_button(self):
        problem = self._name_problem() if self.name_text.value else "type a name"
        if problem:
            self.name_message.value = f'<span style="color:#b00020">{html.escape(problem)}</span>'
        else:
            base = self._settings.models_url
            where = f"served at {base}{self.name_text.value}/" if base else "valid name"
            self.name_message.value = f'<span style="color:#1b5e20">✓ {html.escape(where)}</span>'
        self.publish_button.disabled = (
            bool(problem) or self.model_select.value is None or self._busy
        )

    # ------------------------------------------------------------ publishing

    def start(self):
        """What the Publish button does: run the publish in a thread, showing each step."""
        model = self.namespace.get(self.model_select.value)
        example = self._examples.get(self.example_select.value)
        validate = self._examples.get(self.validate_select.value) if example is not None else None
        self._busy = self.publish_button.disabled = True
        for part in (self.endpoint, self.snippets, self.error):
            part.layout.display = "none"
        self.progress.value, self.progress.bar_style = 0.0, "info"
        self.progress.layout.display = None
        self.thread = threading.Thread(
            target=self._run,
            args=(model, self.name_text.value, example, validate),
            name="mlhub-publish",
            daemon=True,
        )
        self.thread.start()

    def wait(self, timeout=None):
        """Block until the running publish ends (for code and tests; the UI never waits)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self, model, name, example, validate):
        try:
            result = publish(model, name, example, validate=validate, progress=self._progress)
        except MlhubError as exc:
            self._show_error(exc.message)
        except Exception as exc:  # the model's own code can raise anything; show it, keep the UI
            self._show_error(f"{type(exc).__name__}: {exc}")
        else:
            self._show_result(result)
        finally:
            self._busy = False
            self._update_button()

    def _progress(self, step, fraction, message):
        self.progress.value = overall(step, fraction)
        self._show_status(f"{step}: {message}")

    def _show_status(self, text):
        self.status.value = f"<span>{html.escape(text)}</span>"

    def _show_result(self, result):
        self.progress.value, self.progress.bar_style = 1.0, "success"
        self._show_status(f"ready: {result.name} is {result.status}")
        self.endpoint.value = result.summary_html()
        self.snippets.value = result.snippets_html()
        for part in (self.endpoint, self.snippets):
            part.layout.display = None
        if self.record is not None:
            from IPython.display import HTML

            self.record.update(HTML(result.saved_html()))

    def _show_error(self, message):
        self.progress.bar_style = "danger"
        self._show_status("failed")
        style = "color:#b00020;white-space:pre-wrap"
        self.error.value = f'<pre style="{style}">{html.escape(message)}</pre>'
        self.error.layout.display = None


def publish_panel(namespace=None, example=None):
    """The "Publish model" panel for the models in ``namespace`` (default: the notebook's).

    ``example`` is offered as the example for every model, ahead of the tables found.
    """
    panel = PublishPanel(caller_namespace() if namespace is None else namespace, example)
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():  # in a kernel: the output the result is saved in
        from IPython.display import HTML, display

        panel.record = display(HTML(""), display_id=True)
    return panel

/**
 * "Publish model" for the current notebook, in its own kernel and as code the user can read
 * and run again. A Python kernel gets a cell running `mlhub.publish_panel()` (the ipywidgets
 * panel: model, name, example, progress, snippets). An R kernel has no widgets, so this
 * dialog is its panel: it asks the kernel what can be published
 * (`mlhub::publish_candidates()`), lets the user choose, and runs `mlhub::publish(...)` in a
 * cell, whose output shows the steps, the endpoint and the snippets.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { MlhubAPIError, requestAPI } from './api';

export const PYTHON_PANEL = 'import mlhub\nmlhub.publish_panel()';

/** What the R kernel offers: objects with a predict() method, and data frames. */
export interface ICandidates {
  models: { name: string; class: string }[];
  examples: { name: string; rows: number; columns: number }[];
}

/** The user's choices in the R dialog. */
export interface IChoice {
  model: string;
  name: string;
  example: string | null;
}

/** Open the publish panel for `panel`'s kernel (Python or R). */
export async function publishFrom(panel: NotebookPanel): Promise<void> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    await showErrorMessage(
      'No kernel',
      'This notebook has no running kernel: choose one (Kernel > Change Kernel), train your ' +
        'model, then publish it.'
    );
    return;
  }
  const language = (await kernel.info).language_info.name.toLowerCase();
  if (language === 'python') {
    await runInCell(panel, PYTHON_PANEL);
  } else if (language === 'r') {
    await publishFromR(panel);
  } else {
    await showErrorMessage(
      'Cannot publish from this kernel',
      `mlhub publishes models from Python and R kernels; this notebook runs ${language}.`
    );
  }
}

/** Put `code` in the active cell when it is an empty code cell, else in a new cell below,
 * and run it: the published result stays in the notebook with the code that made it. */
export async function runInCell(panel: NotebookPanel, code: string): Promise<void> {
  const notebook = panel.content;
  const active = notebook.activeCell;
  const reuse =
    active !== null &&
    active.model.type === 'code' &&
    active.model.sharedModel.getSource().trim() === '';
  if (!reuse) {
    NotebookActions.insertBelow(notebook);
  }
  notebook.activeCell!.model.sharedModel.setSource(code);
  await NotebookActions.run(notebook, panel.sessionContext);
}

/** The R flow: candidates from the kernel, the dialog, then `mlhub::publish` in a cell. */
async function publishFromR(panel: NotebookPanel): Promise<void> {
  let candidates: ICandidates;
  try {
    const out = await kernelOutput(panel, 'cat(mlhub::publish_candidates())');
    candidates = JSON.parse(out) as ICandidates;
  } catch (error) {
    await showErrorMessage(
      'Cannot publish from this kernel',
      `mlhub's R package did not answer: ${error}. It is installed with the R profile; ` +
        'in another R, install it from extension/mlhub/extension_r.'
    );
    return;
  }
  if (candidates.models.length === 0) {
    await showErrorMessage(
      'No model to publish',
      'Nothing in this notebook has a predict() method yet: fit a model (lm, glm, ' +
        'randomForest, ...) in a cell, then publish it.'
    );
    return;
  }
  const form = new RPublishForm(candidates);
  const result = await showDialog({
    title: 'Publish model',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Publish' })],
    focusNodeSelector: 'select'
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  await runInCell(panel, rPublishCode(result.value));
}

/** The cell an R publish runs. */
export function rPublishCode(choice: IChoice): string {
  const example = choice.example ? `, example = head(${rName(choice.example)}, 5)` : '';
  return (
    `result <- mlhub::publish(${rName(choice.model)}, name = ${JSON.stringify(choice.name)}` +
    `${example})`
  );
}

/** An R variable name as code: backquoted unless it is syntactic. */
export function rName(name: string): string {
  const syntactic = /^([A-Za-z]|[.](?![0-9]))[A-Za-z0-9._]*$/.test(name) || name === '.';
  return syntactic ? name : '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

/** A model name suggested from a variable name (the name rule: a DNS label). */
export function suggestName(variable: string): string {
  const name = variable
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/g, '');
  return name || 'model';
}

/** What `code` prints to stdout in the kernel, without touching the notebook's cells. */
async function kernelOutput(panel: NotebookPanel, code: string): Promise<string> {
  const kernel = panel.sessionContext.session!.kernel!;
  const future = kernel.requestExecute({ code, silent: false, store_history: false });
  let out = '';
  let failure: string | null = null;
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
    if (KernelMessage.isStreamMsg(msg) && msg.content.name === 'stdout') {
      out += msg.content.text;
    } else if (KernelMessage.isErrorMsg(msg)) {
      failure = `${msg.content.ename}: ${msg.content.evalue}`;
    }
  };
  await future.done;
  if (failure) {
    throw new Error(failure);
  }
  return out;
}

/** The R dialog's body: which model, under which name, with which example. */
export class RPublishForm extends Widget {
  constructor(candidates: ICandidates) {
    super();
    this.addClass('mlhub-publish-form');
    const models = candidates.models
      .map(m => `<option value="${escape(m.name)}">${escape(m.name)} (${escape(m.class)})</option>`)
      .join('');
    const examples = candidates.examples
      .map(
        e =>
          `<option value="${escape(e.name)}">${escape(e.name)} ` +
          `(${e.rows} rows, ${e.columns} columns)</option>`
      )
      .join('');
    this.node.innerHTML = `
      <label>Model <select class="mlhub-model-select">${models}</select></label>
      <label>Name <input class="mlhub-model-name" type="text" spellcheck="false"
        autocomplete="off" aria-describedby="mlhub-name-message"></label>
      <p class="mlhub-name-message" id="mlhub-name-message" role="status"></p>
      <label>Example inputs <select class="mlhub-example-select">
        <option value="">(none)</option>${examples}</select></label>
      <p class="mlhub-form-help">The example's first rows become the model's signature and
        the snippets' sample request.</p>`;
    this.modelSelect.addEventListener('change', () => {
      this.nameInput.value = suggestName(this.modelSelect.value);
      this.checkName();
    });
    this.nameInput.addEventListener('input', () => this.checkName());
    this.nameInput.value = suggestName(this.modelSelect.value);
    if (candidates.examples.length > 0) {
      this.exampleSelect.selectedIndex = 1;
    }
  }

  get modelSelect(): HTMLSelectElement {
    return this.node.querySelector('.mlhub-model-select')!;
  }

  get nameInput(): HTMLInputElement {
    return this.node.querySelector('.mlhub-model-name')!;
  }

  get exampleSelect(): HTMLSelectElement {
    return this.node.querySelector('.mlhub-example-select')!;
  }

  getValue(): IChoice {
    return {
      model: this.modelSelect.value,
      name: this.nameInput.value,
      example: this.exampleSelect.value || null
    };
  }

  protected onAfterAttach(): void {
    this.checkName();
  }

  /** Ask the publisher (through this server) whether the name is valid and whether it is
   * taken: the name rule lives in one place, and the dialog says what publishing will do. */
  private checkName(): void {
    const name = this.nameInput.value;
    const asked = ++this.asked;
    const say = (text: string, ok: boolean) => {
      if (asked !== this.asked) {
        return; // a newer keystroke's answer wins
      }
      const message = this.node.querySelector('.mlhub-name-message')!;
      message.textContent = text;
      message.classList.toggle('mlhub-mod-error', !ok);
      const accept = this.node.closest('.jp-Dialog-content')?.querySelector('.jp-mod-accept');
      if (accept) {
        (accept as HTMLButtonElement).disabled = !ok;
      }
    };
    if (!name) {
      say('type a name', false);
      return;
    }
    requestAPI<{ current_version: string | null }>(`models/${encodeURIComponent(name)}`)
      .then(model => say(`✓ publishes a new version of ${name} (live: ${model.current_version})`, true))
      .catch((error: MlhubAPIError) => {
        if (error.status === 404) {
          say(`✓ a new model, served at models/<you>/${name}/`, true);
        } else {
          say(error.message, false);
        }
      });
  }

  private asked = 0;
}

function escape(text: string): string {
  const div = document.createElement('div');
  div.textContent = text;
  return div.innerHTML.replace(/"/g, '&quot;');
}

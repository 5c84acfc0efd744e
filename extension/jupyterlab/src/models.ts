/**
 * The "Models" side panel: the user's published models with their status and live version,
 * each linked to its page in the Models page (versions, keys, logs, charts), refreshed while
 * the panel is open so a publish from a notebook shows up on its own.
 */
import { Widget } from '@lumino/widgets';

import { IModel, IStatus, MlhubAPIError, modelsPageURL, requestAPI } from './api';

const REFRESH_MS = 10000;

export class ModelsPanel extends Widget {
  constructor() {
    super();
    this.id = 'mlhub-models';
    this.addClass('mlhub-models-panel');
    this.title.caption = 'Published models';
    this.node.innerHTML = `
      <header class="mlhub-models-header">
        <h2>Models</h2>
        <button type="button" class="jp-Button mlhub-models-refresh"
          aria-label="Refresh the list of models">Refresh</button>
      </header>
      <p class="mlhub-models-message" role="status"></p>
      <ul class="mlhub-models-list" aria-label="Your published models"></ul>
      <p class="mlhub-models-page-line" hidden><a class="mlhub-models-page" target="_blank"
        rel="noopener">Open the Models page</a>: models shared with you, versions, keys, logs
        and charts.</p>`;
    this.node
      .querySelector('.mlhub-models-refresh')!
      .addEventListener('click', () => void this.refresh());
  }

  /** Read the status (once it answers) and the models, and show them. */
  async refresh(): Promise<void> {
    try {
      if (!this.status?.publisher.reachable) {
        this.status = await requestAPI<IStatus>('status');
      }
      if (!this.status.publisher.reachable) {
        this.show_message(`The publisher cannot be reached: ${this.status.publisher.error}`);
        return;
      }
      const found = await requestAPI<{ models: IModel[] }>('models');
      this.render(found.models);
    } catch (error) {
      const why = error instanceof MlhubAPIError ? error.message : String(error);
      this.show_message(`Cannot list your models: ${why}`);
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
    this.timer = window.setInterval(() => void this.refresh(), REFRESH_MS);
  }

  protected onBeforeHide(): void {
    window.clearInterval(this.timer);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
  }

  private render(models: IModel[]): void {
    const list = this.node.querySelector('.mlhub-models-list')!;
    list.replaceChildren(...models.map(m => this.item(m)));
    const url = modelsPageURL(this.status);
    this.node.querySelector<HTMLElement>('.mlhub-models-page-line')!.hidden = url === null;
    if (url) {
      this.node.querySelector<HTMLAnchorElement>('.mlhub-models-page')!.href = url;
    }
    this.show_message(
      models.length === 0
        ? 'No published models yet: use "Publish model" in a notebook\'s toolbar.'
        : ''
    );
  }

  private item(model: IModel): HTMLLIElement {
    const li = document.createElement('li');
    li.className = 'mlhub-model';
    li.dataset.name = model.name;
    const url = modelsPageURL(this.status, model);
    const name = document.createElement(url ? 'a' : 'span');
    name.className = 'mlhub-model-link';
    name.textContent = model.name;
    if (url) {
      (name as HTMLAnchorElement).href = url;
      (name as HTMLAnchorElement).target = '_blank';
      (name as HTMLAnchorElement).rel = 'noopener';
      name.title = `Open ${model.name}'s page`;
    }
    const status = document.createElement('span');
    status.className = `mlhub-model-status mlhub-status-${model.status}`;
    status.textContent = model.status;
    const detail = document.createElement('span');
    detail.className = 'mlhub-model-detail';
    const replicas = model.replicas === 1 ? '1 replica' : `${model.replicas} replicas`;
    // a version's first 12 hex digits, as the Models page shows it
    detail.textContent = model.current_version
      ? `${model.current_version.slice(0, 19)} · ${replicas}`
      : 'no live version';
    detail.title = model.current_version ?? '';
    li.append(name, status, detail);
    return li;
  }

  private show_message(text: string): void {
    const message = this.node.querySelector('.mlhub-models-message')!;
    message.textContent = text;
    (message as HTMLElement).hidden = text === '';
  }

  private status: IStatus | null = null;
  private timer = 0;
}

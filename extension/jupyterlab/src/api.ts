/**
 * This server's `/mlhub/api` (the mlhub server extension, extension/README.md): the browser
 * never holds the hub token, so it calls its own notebook server, which adds the token and
 * forwards to the publisher.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One model as the publisher's API shows it (the fields the side panel uses). */
export interface IModel {
  owner: string;
  name: string;
  status: string;
  current_version: string | null;
  replicas: number;
  url: string;
  updated: string | null;
}

/** `GET mlhub/api/status`: who we are and whether the publisher answers. */
export interface IStatus {
  user: string;
  models_url: string | null;
  publisher: {
    reachable: boolean;
    error?: string;
    models_page?: string;
  };
}

/** A failed call, with the message the server extension or the publisher gave. */
export class MlhubAPIError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

/** GET one path under `mlhub/api/` and parse its JSON; errors carry the server's message. */
export async function requestAPI<T>(path: string): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'mlhub', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, {}, settings);
  } catch (error) {
    throw new MlhubAPIError(`this notebook server did not answer: ${error}`, 0);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: a proxy's or the server's own error page
  }
  if (!response.ok) {
    const message = body?.error ?? body?.message ?? `HTTP ${response.status}`;
    throw new MlhubAPIError(message, response.status);
  }
  return body as T;
}

/** The Models page of one model (or the list when no model is given), on the hub's origin. */
export function modelsPageURL(status: IStatus | null, model?: IModel): string | null {
  const page = status?.publisher.models_page;
  if (!page) {
    return null;
  }
  if (!model) {
    return page;
  }
  const owner = encodeURIComponent(model.owner);
  return `${page}models/${owner}/${encodeURIComponent(model.name)}`;
}

// Talking to holdfast's read-only JSON API: every request carries the token kept in this
// tab's session storage (entered once on the login page), and the event streams are read
// through fetch, so the token travels in a header and never in a URL.

const KEY = 'holdfast.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** The API refused the token (401) or its scope (403). */
export class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

async function failure(path, response) {
  let message = response.statusText;
  try {
    message = (await response.json()).error || message;
  } catch {
    // Not the API's JSON error: keep the status text.
  }
  if (response.status === 401 || response.status === 403) {
    return new Refused(response.status, message);
  }
  return new Error(`${path}: ${response.status} ${message}`);
}

/** GET a JSON document of the API. */
export async function get(path) {
  const response = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (!response.ok) throw await failure(path, response);
  return response.json();
}

/** GET a file of the API as a Blob (an artifact download when a token is needed). */
export async function blob(path) {
  const response = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (!response.ok) throw await failure(path, response);
  return response.blob();
}

/**
 * Reads a server-sent event stream, calling onEvent(name, data) per event, until the
 * stream ends (resolves) or fails (rejects). `signal` aborts it; `onOpen` is called once
 * the server accepted the request.
 */
export async function stream(path, onEvent, signal, onOpen) {
  const response = await fetch(path, {
    headers: { ...headers(), Accept: 'text/event-stream' },
    cache: 'no-store',
    signal,
  });
  if (!response.ok) throw await failure(path, response);
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') name = text;
        else if (field === 'data') data.push(text);
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

/** The API path of a kind's objects. */
export const COLLECTIONS = {
  BackupPolicy: 'policies',
  Archive: 'archives',
  Restore: 'restores',
  Repository: 'repositories',
  Notifier: 'notifiers',
  ContainerSchedule: 'containerschedules',
};

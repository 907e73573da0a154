// The API token: asked for once when the API answers 401, kept in sessionStorage for this tab.

const KEY = "flexgate.apiToken";

export function getToken() {
  try {
    return window.sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

let memoryToken = null;

function storeToken(token) {
  memoryToken = token;
  try {
    window.sessionStorage.setItem(KEY, token);
  } catch {
    // keep the in-memory copy
  }
}

function clearToken() {
  memoryToken = null;
  try {
    window.sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}

/** The current token (sessionStorage first, then memory), or null. */
export function currentToken() {
  return getToken() || memoryToken;
}

let pending = null;

/**
 * Show the token dialog and resolve with the token the user gives. Several streams may ask
 * at once; they share one dialog. ``refused`` says the stored token was turned down.
 */
export function askForToken(refused) {
  if (pending !== null) return pending;
  if (refused) clearToken();
  const dialog = document.querySelector("[data-testid=token-dialog]");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("[data-testid=token-input]");
  const error = dialog.querySelector("[data-testid=token-error]");
  error.hidden = !refused;
  input.value = "";
  pending = new Promise((resolve) => {
    const onSubmit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      storeToken(token);
      dialog.close();
      pending = null;
      resolve(token);
    };
    // Without a token there is nothing to show: keep the dialog up.
    const onCancel = (event) => event.preventDefault();
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
  });
  if (!dialog.open) dialog.showModal();
  input.focus();
  return pending;
}

/**
 * GET a JSON API path with the token (as ``Authorization: Bearer``, which keeps it out of URLs and logs).
 * On 401 the token is asked for, as the streams do, and the request made once more. Resolves with
 * ``{status, body}`` (body null when the answer is not JSON).
 */
export async function fetchJson(path) {
  for (let attempt = 0; ; attempt += 1) {
    const token = currentToken();
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401 && attempt === 0) {
      await askForToken(Boolean(token));
      continue;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON: the status says enough
    }
    return { status: response.status, body };
  }
}

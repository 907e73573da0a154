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

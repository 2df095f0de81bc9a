// /settings/integrations: the add/edit dialog, the success state, delete, "show more", the
// cards' connection actions; the dialog's API section is store-api.js, the edit dialog's
// tools store-tools.js. Changes go through the same JSON API as any other client; the cards
// are the server's (_card.html), fetched as fragments after each.

import {
  api,
  CARDS,
  closeDialog,
  fragment,
  initCopyButtons,
  initHeader,
  OFFLINE,
  openDialog,
  resetCopyButtons,
  restoreFocusOnClose,
  setBusy,
  setFieldError,
  setHelp,
  showAlert,
  showPanel,
  timeAgo,
  toast,
} from "./ui.js";
import {
  connectStore,
  credentialsBody,
  credentialsRefused,
  credentialsSaved,
  initCredentials,
  renderCredentials,
  resetCredentials,
  showFailure,
  showLastCheck,
  submittedCredentials,
} from "./store-api.js";

const PLATFORMS = {
  shopify: { label: "Shopify", placeholder: "my-shop.myshopify.com" },
  woocommerce: { label: "WooCommerce", placeholder: "shop.example.com" },
};
const DOMAIN_HELP = "Your store's address. You can paste its full URL.";
const LOOPBACK = /^(localhost|127(\.\d+){3}|\[::1\])$/u;
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//iu;
// Chromium's parser lets spaces and "%" through, percent-encoded: not a host to send. An
// underscore is let through for the server to explain.
const HOST = /^[a-z0-9._-]+$/u;
const NAME_MAX = 100;

const $ = (id) => document.getElementById(id);
const grid = $("cards");
const empty = $("empty");
const storesHeading = $("stores-heading");
const moreButton = document.querySelector('[data-action="more"]');

const dialog = $("store-dialog");
const form = $("store-form");
const success = $("store-success");
const title = $("store-title");
const alertBox = $("store-alert");
const nameInput = $("store-name");
const platformSelect = $("store-platform");
const domainInput = $("store-domain");
const activeSwitch = $("store-active");
const saveButton = $("store-save");
const saveReason = $("store-save-reason");
const editOnly = form.querySelector(".edit-only");
const steps = $("store-steps");
const webhookUrl = $("store-webhook-url");
const storeOrders = $("store-orders");

const deleteDialog = $("delete-dialog");
const deleteAlert = $("delete-alert");
const deleteConfirm = deleteDialog.querySelector('[data-action="confirm-delete"]');

const fields = { name: nameInput, type: platformSelect, domain: domainInput };

// What the dialog is doing: creating a store, or editing the one whose id is `editing`.
// `view` counts what it has shown: steps still running after it moved on report in a toast.
const state = { editing: null, touched: new Set(), serverErrors: {}, saving: false, view: 0 };
let pendingDelete = null;

// Cards

function cardById(id) {
  return [...grid.children].find((card) => card.dataset.id === id) ?? null;
}

/** The store a card shows, from the data attributes _card.html writes. */
function storeOf(card) {
  const { id, type, name, domain, active, credentials, webhooks } = card.dataset;
  return { id, type, name, domain, is_active: active === "true", credentials, webhooks };
}

function showTimes(root) {
  for (const time of root.querySelectorAll("time")) timeAgo(time);
}

/** Fetch store `id`'s card as the server draws it now, in place of its old one or first. */
async function refreshCard(id) {
  const result = await fragment(`${CARDS}/${id}`);
  if (!result.ok) return result;
  const card = result.data.firstElementChild;
  showTimes(card);
  const old = cardById(id);
  const focused = old?.contains(document.activeElement) ? document.activeElement : null;
  if (old) old.replaceWith(card);
  else grid.prepend(card);
  // Keyboard users keep their place: from the old card's button to the same one on the new.
  if (focused) focusAfter(focused).focus();
  syncEmptyState();
  if (card.hasAttribute("data-syncing")) watchSync(id);
  return result;
}

// Cards whose sync is queued or running: redrawn every 2 s, so the bar moves, until it ends
// or the card leaves the page.
const watched = new Set();
const SYNC_POLL_MS = 2000;

function watchSync(id) {
  if (watched.has(id)) return;
  watched.add(id);
  const poll = async () => {
    if (!cardById(id)?.hasAttribute("data-syncing")) {
      watched.delete(id);
      return;
    }
    await refreshCard(id);
    setTimeout(poll, SYNC_POLL_MS);
  };
  setTimeout(poll, SYNC_POLL_MS);
}

function syncEmptyState() {
  const hasCards = grid.childElementCount > 0;
  empty.hidden = hasCards;
  storesHeading.hidden = !hasCards;
}

function firstAddButton() {
  return document.querySelector('[data-action="add"]');
}

/** Where focus goes back to when a dialog's opener is gone: the same button on the store's
 * redrawn card, else the top "Add" button. */
function focusAfter(opener) {
  const id = opener?.closest("article.card")?.dataset.id;
  const card = id ? cardById(id) : null;
  return card?.querySelector(`[data-action="${opener.dataset.action}"]`) ?? firstAddButton();
}

// The store dialog: validation as you type

// The browser checks only what keeps Save disabled: something to send, shaped like an
// address. Whether it is a store's domain is the server's call (stores/domains.py): its 422
// shows under the field.

/** The host in what was typed or pasted, as the browser's URL parser reads it (lowercase,
 * punycode), if it is made of what host names are made of; else null. */
function hostOf(raw) {
  try {
    const { hostname } = new URL(`https://${raw.trim().replace(SCHEME, "")}`);
    return HOST.test(hostname) ? hostname : null;
  } catch {
    return null;
  }
}

function nameProblem(raw) {
  const name = raw.trim();
  if (!name) return "Enter a name for this store.";
  return [...name].length > NAME_MAX ? `Use at most ${NAME_MAX} characters.` : "";
}

function domainProblem(raw, host) {
  if (!raw.trim()) return "Enter your store's domain, like my-shop.myshopify.com.";
  return host ? "" : "That doesn't look like a domain. Enter its address, like shop.example.com.";
}

function validate() {
  const host = hostOf(domainInput.value);
  const errors = {
    name: nameProblem(nameInput.value),
    type: platformSelect.value ? "" : "Choose Shopify or WooCommerce.",
    domain: domainProblem(domainInput.value, host),
  };
  for (const [field, message] of Object.entries(state.serverErrors)) {
    errors[field] ||= message;
  }
  return { errors, host };
}

const REASONS = {
  name: "Add a store name to save.",
  type: "Choose a platform to save.",
  domain: "Fix the domain to save.",
};
const LABELS = { name: "store name", type: "platform", domain: "domain" };

function render() {
  const { errors, host } = validate();
  for (const [field, input] of Object.entries(fields)) {
    // Say what is wrong as soon as there is something to judge, or once the field was left.
    const shown = state.touched.has(field) || (field !== "type" && input.value.trim() !== "");
    setFieldError(input, shown ? errors[field] : "");
  }
  const typed = domainInput.value.trim();
  setHelp(
    domainInput,
    host && host !== typed.toLowerCase() ? `Will be saved as ${host}.` : DOMAIN_HELP,
  );
  const firstProblem = Object.keys(fields).find((field) => errors[field]);
  const credentialsProblem = renderCredentials(platformSelect.value);
  const busy = state.saving || saveButton.hasAttribute("aria-busy");
  saveButton.disabled = busy || Boolean(firstProblem || credentialsProblem);
  let reason = "";
  if (firstProblem && !state.saving) {
    // The server refused what was typed: nothing is wrong with it in form, so ask for a change.
    reason =
      firstProblem in state.serverErrors
        ? `Change the ${LABELS[firstProblem]} to save.`
        : REASONS[firstProblem];
  } else if (!state.saving) {
    reason = credentialsProblem;
  }
  saveReason.textContent = reason;
}

for (const [field, input] of Object.entries(fields)) {
  input.addEventListener("input", () => {
    delete state.serverErrors[field];
    if (field === "type") {
      delete state.serverErrors.domain;
      state.touched.add("type");
      domainInput.placeholder = PLATFORMS[platformSelect.value].placeholder;
    }
    render();
  });
  input.addEventListener("blur", () => {
    state.touched.add(field);
    render();
  });
}

// Opening the dialog

/** Open the form for a new store, or for `store` (what storeOf() reads from its card). */
function showForm(store) {
  state.editing = store?.id ?? null;
  state.touched = new Set(store ? Object.keys(fields) : []);
  state.serverErrors = {};
  state.saving = false;
  state.view += 1;
  showPanel(form);
  // Steps still running for the store shown before keep their own button no longer.
  setBusy(saveButton, false);
  title.textContent = store ? "Edit Store" : "Connect a New Store";
  form.querySelector(".dialog-desc").hidden = Boolean(store);
  saveButton.textContent = store ? "Save Changes" : "Save Connection";
  editOnly.hidden = !store;
  nameInput.value = store?.name ?? "";
  platformSelect.value = store?.type ?? "";
  domainInput.value = store?.domain ?? "";
  domainInput.placeholder = PLATFORMS[store?.type ?? "shopify"].placeholder;
  activeSwitch.checked = store?.is_active ?? true;
  webhookUrl.value = "";
  storeOrders.textContent = "";
  // Shopify signs with its own key; a secret Astra makes up only works for WooCommerce.
  for (const tool of editOnly.querySelectorAll("[data-platform]")) {
    tool.hidden = tool.dataset.platform !== store?.type;
  }
  showAlert(alertBox, "");
  steps.hidden = true;
  resetCredentials(store?.credentials);
  resetCopyButtons(dialog);
  render();
}

for (const button of document.querySelectorAll('[data-action="add"]')) {
  button.addEventListener("click", () => {
    showForm(null);
    openDialog(dialog, button);
    nameInput.focus();
  });
}

grid.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const store = storeOf(button.closest("article.card"));
  const action = button.dataset.action;
  if (action === "edit" || action === "edit-credentials") {
    showForm(store);
    openDialog(dialog, button);
    // From the card's "Credentials rejected": straight to what needs fixing.
    const credentials = document.querySelector('[data-cred="replace"]');
    (action === "edit" ? nameInput : credentials).focus();
    loadStore(store.id);
  } else if (action === "delete") {
    openDelete(store, button);
  } else {
    storeAction(action, store, button);
  }
});

// The dialog's "Orders" line is the card's, less the paused notice the switch already gives.
function ordersLine(card) {
  const line = card.querySelector(".card-orders").cloneNode(true);
  line.querySelector("b")?.remove();
  return [...line.childNodes];
}

// The card carries only what it shows; the webhook URL comes from the API when editing,
// and the card is drawn afresh for new order figures, in the dialog too.
async function loadStore(id) {
  const [result] = await Promise.all([api("GET", `/api/integrations/${id}`), refreshCard(id)]);
  if (state.editing !== id) return;
  if (!result.ok) {
    showAlert(alertBox, result.problem);
    return;
  }
  webhookUrl.value = result.data.webhook_url;
  storeOrders.replaceChildren(...ordersLine(cardById(id)));
  if (result.data.has_credentials) showLastCheck(result.data.connection);
}

for (const button of document.querySelectorAll('dialog [data-action="close"]')) {
  button.addEventListener("click", () => closeDialog(button.closest("dialog")));
}

// Saving

function applyRefusal(result) {
  // 409: the domain is taken. 422: the field it names. Anything else: above the form.
  if (result.status === 409) {
    state.serverErrors.domain = result.problem;
  } else if ("credentials" in result.fields) {
    const sentence = credentialsRefused(result.data?.detail, platformSelect.value);
    showAlert(alertBox, sentence);
    return;
  } else {
    for (const [field, message] of Object.entries(result.fields)) {
      if (field in fields) state.serverErrors[field] = message;
    }
  }
  const problemField = Object.keys(fields).find((field) => state.serverErrors[field]);
  if (problemField) {
    state.touched.add(problemField);
    render();
    fields[problemField].focus();
  } else {
    showAlert(alertBox, result.problem || "This change couldn't be saved.");
  }
}

function showSuccess(created, withApi) {
  const platform = PLATFORMS[created.type];
  showPanel(success);
  state.view += 1;
  $("success-desc").textContent = withApi
    ? `“${created.name}” is saved. Astra is checking its credentials, then setting the ` +
      "webhooks up in your store."
    : `“${created.name}” is connected. Add this webhook in your ${platform.label} admin ` +
      "so Astra receives the store's orders.";
  $("success-url").value = created.webhook_url;
  $("success-secret").value = created.webhook_secret;
  $("success-local").hidden = !LOOPBACK.test(new URL(created.webhook_url).hostname);
  // With the store's API, Astra sets the webhooks up itself: no steps by hand.
  for (const steps of success.querySelectorAll(".steps")) {
    steps.hidden = withApi || steps.dataset.platform !== created.type;
  }
  $("success-steps").hidden = !withApi;
  $("success-problem").hidden = true;
  resetCopyButtons(success);
  $("success-title").focus();
}

// The steps run on while the seller copies, closes the dialog or opens another: the card is
// redrawn when they end, and a toast tells how they went if the dialog moved on.
const stillShown = (view) => dialog.open && state.view === view;
const outcome = (name, failure) => `“${name}”: ${failure ? failure.message : DONE}`;

async function connectCreated(created) {
  const view = state.view;
  const failure = await connectStore(created.id, $("success-steps"), "connect");
  await refreshCard(created.id);
  if (!stillShown(view)) {
    toast(outcome(created.name, failure));
    return;
  }
  $("success-desc").textContent = failure
    ? `“${created.name}” is saved, but not connected to the store's API yet.`
    : `“${created.name}” is connected: its orders arrive as they happen.`;
  if (failure) showFailure($("success-problem"), failure);
}

async function connectEdited(id, name) {
  const view = state.view;
  setBusy(saveButton, true, "Checking…");
  const failure = await connectStore(id, steps, "edit");
  await refreshCard(id);
  if (!stillShown(view)) {
    toast(outcome(name, failure));
    return;
  }
  setBusy(saveButton, false);
  render();
  if (failure) {
    showFailure(alertBox, failure);
    return;
  }
  closeDialog(dialog);
  toast(`Changes saved. ${DONE}`);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (state.saving) return;
  state.touched = new Set(Object.keys(fields));
  submittedCredentials();
  render();
  if (saveButton.disabled) return;
  // Sent as typed: the server normalises the domain, and says what it refuses.
  const body = {
    name: nameInput.value,
    type: platformSelect.value,
    domain: domainInput.value,
  };
  const editing = state.editing;
  if (editing) body.is_active = activeSwitch.checked;
  const credentials = credentialsBody(platformSelect.value);
  if (credentials) body.credentials = credentials;
  showAlert(alertBox, "");
  state.saving = true;
  setBusy(saveButton, true, "Saving…");
  const result = editing
    ? await api("PUT", `/api/integrations/${editing}`, body)
    : await api("POST", "/api/integrations", body);
  // The server draws the card as saved: in place of the old one, or first for a new store.
  const card = result.ok ? await refreshCard(result.data.id) : null;
  state.saving = false;
  setBusy(saveButton, false);
  if (!result.ok) {
    render();
    applyRefusal(result);
    return;
  }
  if (!card.ok) toast(card.problem);
  credentialsSaved(platformSelect.value);
  if (editing && credentials) {
    connectEdited(editing, result.data.name);
  } else if (editing) {
    closeDialog(dialog);
    toast("Changes saved.");
  } else {
    showSuccess(result.data, Boolean(credentials));
    if (credentials) connectCreated(result.data);
  }
});

// The edit form's tools (deliveries, a new secret, Shopify's signing key) load on first use.
editOnly.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  const store = storeOf(cardById(state.editing));
  try {
    const { openTool } = await import("./store-tools.js");
    openTool(button, store, () => refreshCard(store.id));
  } catch {
    showAlert(alertBox, OFFLINE);
  }
});

// Deleting

function openDelete(store, opener) {
  pendingDelete = store;
  deleteDialog.querySelector('[data-slot="name"]').textContent = store.name;
  deleteDialog.querySelector('[data-slot="domain"]').textContent = store.domain;
  showAlert(deleteAlert, "");
  deleteConfirm.disabled = false;
  openDialog(deleteDialog, opener);
}

deleteConfirm.addEventListener("click", async () => {
  const { id, name } = pendingDelete;
  setBusy(deleteConfirm, true, "Deleting…");
  const result = await api("DELETE", `/api/integrations/${id}`);
  setBusy(deleteConfirm, false);
  // 404: someone else already deleted it; either way it is gone.
  if (!result.ok && result.status !== 404) {
    showAlert(deleteAlert, result.problem);
    return;
  }
  const card = cardById(id);
  const neighbour = card?.nextElementSibling ?? card?.previousElementSibling;
  card?.remove();
  syncEmptyState();
  closeDialog(deleteDialog, neighbour?.querySelector('[data-action="edit"]') ?? firstAddButton());
  toast(`“${name}” was deleted.`);
});

// More pages

moreButton?.addEventListener("click", async () => {
  const cursor = moreButton.dataset.cursor;
  setBusy(moreButton, true, "Loading…");
  const result = await fragment(`${CARDS}?cursor=${encodeURIComponent(cursor)}`);
  setBusy(moreButton, false);
  if (!result.ok) {
    toast(result.problem);
    return;
  }
  // A store added in this page since is already shown.
  for (const card of [...result.data.children]) {
    if (!cardById(card.dataset.id)) grid.append(card);
  }
  showTimes(grid);
  const next = result.headers.get("Astra-Next-Cursor") ?? "";
  moreButton.dataset.cursor = next;
  moreButton.parentElement.hidden = !next;
});

// A create in flight must finish in view: its secret is shown only in the success state.
dialog.addEventListener("cancel", (event) => {
  if (state.saving) event.preventDefault();
});

// The cards' connection actions: each asks the store, then the server redraws the card.

const DONE = "Webhooks set up in your store ✓";
const ACTIONS = {
  test: ["Testing…", testConnection],
  reenable: ["Re-enabling…", setUpWebhooks],
  setup: ["Setting up…", setUpWebhooks],
  sync: ["Syncing…", syncNow],
};

/** Test the credentials; when they work and Astra set webhooks up, read how they are now. */
async function testConnection(store) {
  const check = await api("POST", `/api/integrations/${store.id}/check`);
  if (!check.ok) return check.problem;
  if (check.data.ok && store.webhooks) await api("GET", `/api/integrations/${store.id}/webhooks`);
  return check.data.message;
}

async function setUpWebhooks(store) {
  const result = await api("POST", `/api/integrations/${store.id}/webhooks`);
  return result.ok ? DONE : result.problem;
}

/** Queue an import of the store's orders; the redrawn card then follows it. */
async function syncNow(store) {
  const result = await api("POST", `/api/integrations/${store.id}/sync`);
  return result.ok ? "Importing past orders…" : result.problem;
}

async function storeAction(action, store, button) {
  const [busy, run] = ACTIONS[action];
  setBusy(button, true, busy);
  const said = await run(store);
  await refreshCard(store.id);
  // The card was redrawn: focus goes to its same button (or, the remedy done, to Test
  // connection), unless the seller moved on meanwhile.
  const card = cardById(store.id);
  if (card && [button, document.body].includes(document.activeElement)) {
    const again = card.querySelector(`[data-action="${action}"]`);
    (again ?? card.querySelector('[data-action="test"]'))?.focus();
  }
  toast(`“${store.name}”: ${said}`);
}

/** WooCommerce disables a failing webhook and Shopify removes one, telling nobody: on
 * opening the page, read the state at the store of the webhooks Astra set up, two stores
 * at a time, and redraw a card whose webhooks changed. */
async function readWebhooks() {
  const cards = [...grid.querySelectorAll("article[data-webhooks]")];
  const next = async () => {
    for (let card = cards.shift(); card; card = cards.shift()) {
      const { id, webhooks } = card.dataset;
      const result = await api("GET", `/api/integrations/${id}/webhooks`);
      if (result.ok && result.data.webhooks.some((hook) => hook.status !== webhooks)) {
        await refreshCard(id);
      }
    }
  };
  await Promise.all([next(), next()]);
}

// Wiring

const announce = (message) => {
  $("store-live").textContent = message;
};
initCopyButtons(dialog, announce);
initCredentials({
  changed: render,
  storeId: () => state.editing,
  removed: (id) => refreshCard(id),
});
readWebhooks();
for (const card of grid.querySelectorAll("article[data-syncing]")) watchSync(card.dataset.id);
restoreFocusOnClose(dialog, focusAfter);
restoreFocusOnClose(deleteDialog, focusAfter);
initHeader();

// "3 min ago" stays true while the page is open.
showTimes(document);
setInterval(() => showTimes(document), 30000);

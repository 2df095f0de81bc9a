// The sign-in and first-run forms: plain fields, posted to the JSON auth API.

import { api, setBusy, setFieldError, showAlert } from "./ui.js";

function required(input, message) {
  const missing = !input.value.trim();
  setFieldError(input, missing ? message : "");
  return !missing;
}

// The API's rule for an email address (auth/schemas.py), with a sentence people can act on.
const EMAIL = /^[^@\s]+@[^@\s]+$/u;

function validEmail(input) {
  if (!required(input, "Enter your email address.")) return false;
  const ok = EMAIL.test(input.value.trim());
  setFieldError(input, ok ? "" : "Enter an email address like you@example.com.");
  return ok;
}

function showFieldErrors(form, fields) {
  for (const [name, message] of Object.entries(fields)) {
    const input = form.elements.namedItem(name);
    if (input) setFieldError(input, message);
  }
}

async function submit(form, alert, request, busyLabel) {
  const button = form.querySelector('button[type="submit"]');
  showAlert(alert, "");
  setBusy(button, true, busyLabel);
  const result = await request();
  setBusy(button, false);
  if (!result.ok) {
    showFieldErrors(form, result.fields);
    showAlert(alert, result.problem);
    (form.querySelector('[aria-invalid="true"]') ?? alert).focus();
  }
  return result;
}

const login = document.getElementById("login-form");
if (login) {
  const { email, password } = login.elements;
  const alert = document.getElementById("login-alert");
  alert.tabIndex = -1;
  email.focus();
  login.addEventListener("submit", async (event) => {
    event.preventDefault();
    const filled = [validEmail(email), required(password, "Enter your password.")];
    if (!filled.every(Boolean)) {
      login.querySelector('[aria-invalid="true"]').focus();
      return;
    }
    const result = await submit(
      login,
      alert,
      () => api("POST", "/api/auth/login", { email: email.value, password: password.value }),
      "Signing in…",
    );
    // The server already checked that "next" is a path on this site.
    if (result.ok) location.replace(login.dataset.next);
  });
}

const setup = document.getElementById("setup-form");
if (setup) {
  const { email, password, confirm } = setup.elements;
  const alert = document.getElementById("setup-alert");
  const minimum = Number(setup.dataset.minPassword);
  alert.tabIndex = -1;
  email.focus();
  setup.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checks = [
      validEmail(email),
      required(password, "Choose a password."),
    ];
    if (password.value && [...password.value].length < minimum) {
      setFieldError(password, `Use at least ${minimum} characters.`);
      checks.push(false);
    }
    const same = password.value === confirm.value;
    setFieldError(confirm, same ? "" : "The passwords don't match.");
    checks.push(same);
    if (!checks.every(Boolean)) {
      setup.querySelector('[aria-invalid="true"]').focus();
      return;
    }
    const body = { token: setup.dataset.token, email: email.value, password: password.value };
    const result = await submit(
      setup,
      alert,
      () => api("POST", "/api/auth/setup", body),
      "Creating account…",
    );
    if (result.ok) location.replace("/settings/integrations");
  });
}

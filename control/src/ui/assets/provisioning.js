// realmctl operator UI: a tenant's provisioning, live — after a create, a retry or a delete
// (or the Progress button of a tenant not ready), each step's state as it changes, from the
// tenant's server-sent event stream (GET /v1/tenants/{id}/events: the state now, then one
// event per change; `ready` or `deleted` ends it). The session cookie goes along (same
// origin); an operator signed in with the token (which an EventSource cannot send) gets the
// tenant read again each second instead. A failed step shows its error, and Retry runs it
// now. Runs after ui.js and uses its helpers (api, el, $, views). Everything is text.
"use strict";

const PROGRESS_POLL_MS = 1000;
// The tenant watched, its event stream or poll timer, and how many updates came.
const progress = { id: null, source: null, poll: null, updates: 0 };

// Ends the stream: the server's last event is `ready` or `deleted`.
const PROGRESS_DONE = new Set(["ready", "deleted"]);

function stepItem(s) {
  const tries = s.attempts > 1 ? " (attempt " + s.attempts + ")" : "";
  const again = s.state === "failed" && s.next_attempt_at ? "; tried again at " + s.next_attempt_at : "";
  return el("li", { class: "step step-" + s.state, "data-step": s.step, "data-state": s.state },
    el("span", { class: "step-name" }, s.step), " ",
    el("span", { class: "step-provider" }, "(" + s.provider + ")"), " ",
    el("b", { class: "step-state" }, s.state + tries),
    s.last_error ? el("span", { class: "step-error" }, " — " + s.last_error + again) : "");
}

// The tenant as the API shows it (null: deleted), in the panel; `via`: where it came from
// (`answer` of a change, the event `stream`, a `read`), kept on the panel.
function renderProgress(t, via) {
  const p = t && t.provisioning;
  const state = !t ? "deleted" : p ? p.state : "ready";
  const panel = $("provisioning-view");
  const changed = panel.dataset.state !== state;
  panel.dataset.state = state;
  // An outcome (ready, failed, deleted) shows in the tenant list now, not at its next refresh.
  if (changed && progress.updates > 0 && !["provisioning", "deleting"].includes(state)) refresh();
  progress.updates += 1;
  panel.dataset.updates = String(progress.updates);
  panel.dataset.via = via;
  const steps = p ? p.steps : [];
  const finished = steps.filter((s) => ["done", "skipped", "removed"].includes(s.state)).length;
  $("provisioning-state").textContent = !t ? "Deleted: every step removed." :
    !p ? "Ready (nothing to provision here)." :
    state + " — " + finished + " of " + steps.length + " steps finished" +
    (p.routed ? "; in the gateways' table" : "; not routed yet");
  $("provisioning-steps").replaceChildren(...steps.map(stepItem));
  const failed = state === "failed" || state === "delete_failed";
  $("provisioning-error").textContent = failed && p.error ? p.error : "";
  $("provisioning-retry").hidden = !failed;
}

function stopProgress() {
  if (progress.source) progress.source.close();
  clearInterval(progress.poll);
  progress.source = null;
  progress.poll = null;
}

// Watch tenant `id`, shown now as `t` when the caller has it (a create's or retry's answer).
function watchProvisioning(id, t) {
  stopProgress();
  progress.id = id;
  progress.updates = 0;
  delete $("provisioning-view").dataset.state;
  $("provisioning-tenant").textContent = id;
  $("provisioning-view").hidden = false;
  if (t) renderProgress(t, "answer");
  else $("provisioning-state").textContent = "Waiting for the tenant's state…";
  if (session) follow(id);
  else poll(id);
}

// The event stream; it reconnects by itself after a dropped connection, and the first event
// of each connection is the state then. A refusal (the tenant gone, the session ended)
// closes it for good: the tenant is read once more, and polled if it is still changing.
function follow(id) {
  const source = new EventSource("/v1/tenants/" + encodeURIComponent(id) + "/events",
    { withCredentials: true });
  progress.source = source;
  const on = (name) => source.addEventListener(name, (ev) => {
    if (progress.source !== source) return;
    const data = JSON.parse(ev.data);
    renderProgress(name === "deleted" ? null : data, "stream");
    if (PROGRESS_DONE.has(name)) stopProgress();
  });
  ["progress", "failed", "ready", "deleted"].forEach(on);
  source.addEventListener("error", () => {
    if (progress.source !== source || source.readyState !== EventSource.CLOSED) return;
    stopProgress();
    readOnce(id).then((done) => { if (!done && progress.id === id) poll(id); });
  });
}

// Read the tenant once: true when there is nothing more to watch (ready, or gone).
async function readOnce(id) {
  try {
    const t = await api("GET", "/v1/tenants/" + encodeURIComponent(id));
    if (progress.id !== id) return true;
    renderProgress(t, "read");
    return !t.provisioning || t.provisioning.state === "ready";
  } catch (e) {
    if (progress.id !== id) return true;
    if (e.status === 404) {
      renderProgress(null, "read");
      return true;
    }
    $("provisioning-error").textContent = String(e.message || e);
    return e.status === 401;
  }
}

function poll(id) {
  readOnce(id).then((done) => {
    if (done || progress.id !== id) return;
    progress.poll = setInterval(async () => {
      if (await readOnce(id)) stopProgress();
    }, PROGRESS_POLL_MS);
  });
}

function closeProgress() {
  stopProgress();
  progress.id = null;
  $("provisioning-view").hidden = true;
}

$("provisioning-retry").addEventListener("click", async () => {
  const id = progress.id;
  try {
    $("provisioning-error").textContent = "";
    const t = await api("POST", "/v1/tenants/" + encodeURIComponent(id) + "/retry");
    watchProvisioning(id, t);
    await refresh();
  } catch (e) {
    $("provisioning-error").textContent = String(e.message || e);
  }
});
$("provisioning-close").addEventListener("click", closeProgress);

// Deferred after ui.js: the stream ends at sign-out.
views.push({ refresh: async () => {}, reset: closeProgress });

// realmctl operator UI: what the editing views share — each field's problem list (the API's
// 422 problems put beside the field their path names), labelled inputs built for repeated
// rows, modal dialogs (Escape closes, focus returns to the opener), and wide tables made
// scrollable regions on small screens. Runs after ui.js (api, el, $, views). Text only.
"use strict";

// A list id from its form and a problem path: `routes[0].auth` → `tenant-form-routes-0-auth-problems`.
function problemsId(form, path) {
  return form.id + "-" + path.replace(/[^A-Za-z0-9_]+/g, "-").replace(/-+$/, "") + "-problems";
}

// Give every `[data-path]` control or group of `form` a problem list of its own, once, tied
// to it with aria-describedby (a group's list goes at its end).
function wireProblems(form) {
  for (const node of form.querySelectorAll("[data-path]")) {
    const id = problemsId(form, node.dataset.path);
    if ($(id)) continue;
    const list = el("ul", { id, class: "error problems", "data-for": node.dataset.path });
    if (node.tagName === "FIELDSET") {
      node.append(list);
    } else {
      const holder = node.closest(".field") || node.closest("label") || node;
      holder.after(list);
      node.setAttribute("aria-describedby", id);
    }
  }
}

// The path one step up: `routes[0].auth` → `routes[0]` → `routes` → "".
function parentPath(at) {
  const m = at.match(/^(.*?)(\.[^.[\]]+|\[\d+\])$/);
  return m ? m[1] : "";
}

// Every problem of `error` (an ApiError; null clears) beside the field its path names, or
// the nearest group above it; the rest in `rest`. Returns how many were placed by a field.
function placeProblems(form, rest, error) {
  const lists = new Map([...form.querySelectorAll("ul.problems[data-for]")]
    .map((l) => [l.dataset.for, []]));
  const other = [];
  const raw = error && error.raw && error.raw.length ? error.raw : null;
  if (raw) {
    for (const p of raw) {
      let at = p.at || "";
      while (at && !lists.has(at)) at = parentPath(at);
      if (at) lists.get(at).push(p.at === at ? p.message : p.at + ": " + p.message);
      else other.push((p.at ? p.at + ": " : "") + p.message);
    }
  } else if (error) {
    other.push(String(error.message || error));
  }
  let placed = 0;
  for (const list of form.querySelectorAll("ul.problems[data-for]")) {
    const msgs = lists.get(list.dataset.for) || [];
    placed += msgs.length;
    list.replaceChildren(...msgs.map((m) => el("li", {}, m)));
    const input = form.querySelector("[aria-describedby=\"" + list.id + "\"]");
    if (input && msgs.length) input.setAttribute("aria-invalid", "true");
    else if (input) input.removeAttribute("aria-invalid");
  }
  $(rest).replaceChildren(...other.map((m) => el("li", {}, m)));
  const first = form.querySelector("[aria-invalid=true]");
  if (first) first.focus();
  return placed;
}

// A labelled input for a repeated row: `path` names it for the API's problems.
let fieldSeq = 0;
function labelled(text, control, path) {
  const id = "f" + ++fieldSeq;
  control.id = id;
  if (path) control.dataset.path = path;
  return el("div", { class: "field" }, el("label", { for: id }, text), control);
}

// A number as the API takes it; anything else as typed, for the API to name what is wrong.
function numberOrText(v) {
  const t = v.trim();
  return /^\d+$/.test(t) ? Number(t) : t;
}

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter((l) => l);
}

// A modal dialog: Escape closes it (the browser's own), and focus goes back to the control
// that opened it, or to `fallback()` when that control was re-rendered meanwhile.
function openDialog(dialog, opener, fallback) {
  dialog._return = { opener, fallback };
  if (!dialog.open) dialog.showModal();
}

function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

function returnFocus(dialog) {
  const r = dialog._return || {};
  const target = r.opener && r.opener.isConnected ? r.opener : r.fallback && r.fallback();
  if (target) target.focus();
}

// Wide tables scroll within a focusable region of their own, so the page never does.
function scrollableTables() {
  for (const t of document.querySelectorAll("#console table")) {
    if (t.parentElement.classList.contains("table-wrap")) continue;
    const section = t.closest("section");
    const title = section && section.querySelector("h2");
    const wrap = el("div", { class: "table-wrap", tabindex: "0", role: "region",
      "aria-label": (title ? title.textContent : t.id) + " table" });
    t.before(wrap);
    wrap.append(t);
  }
}

for (const d of document.querySelectorAll("dialog")) {
  d.addEventListener("close", () => returnFocus(d));
}
scrollableTables();
wireProblems($("create-form"));
// The views' menu is shown with the console.
new MutationObserver(() => { $("console-nav").hidden = $("console").hidden; })
  .observe($("console"), { attributes: true, attributeFilter: ["hidden"] });

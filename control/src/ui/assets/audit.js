// realmctl operator UI: the audit log — changes and refusals, newest first, who, from where,
// and the changed object's digests before → after. Runs after ui.js and uses its helpers
// (api, el, fill, $, views). Everything is rendered as text.
"use strict";

// The audit view. GET /v1/audit pages forward: `?after=<seq>&limit=<n>` gives the entries
// after `seq`, oldest first; without `after`, the newest page. The view holds entries by
// seq: a refresh fetches those after the newest held (none held: the newest page), and
// "Older" the page just before the oldest held. Seqs only grow; the oldest are pruned.
const AUDIT_PAGE = 50;
const AUDIT_MAX_PAGE = 500;
const audit = {
  entries: new Map(),
  // The oldest seq asked for with "Older" (null: only the newest page is kept).
  floor: null,
  // A seq nothing older than which is kept (pruned); null: not seen.
  prunedBelow: null,
  loading: false,
};

function resetAudit() {
  audit.entries.clear();
  audit.floor = null;
  audit.prunedBelow = null;
}

function keepAudit(entries) {
  for (const e of entries) audit.entries.set(e.seq, e);
}

function auditRow(e) {
  return el("tr", { "data-seq": e.seq },
    el("td", {}, e.at), el("td", {}, (e.name || e.actor) + (e.role ? " (" + e.role + ")" : "")),
    el("td", {}, e.action), el("td", {}, e.target),
    el("td", { class: e.outcome === "ok" ? "ok" : "bad" }, e.outcome + " " + e.status +
      (e.detail ? " — " + e.detail : "")),
    el("td", {}, e.peer || "—"), digestCell(e));
}

// The changed object before → after, by the first characters of its digests (the whole
// digest in the title); "—" where there was none (created, deleted).
function digestCell(e) {
  const short = (d) => (d ? d.slice(0, 12) : "—");
  if (!e.before_digest && !e.after_digest) return el("td", { class: "digest" }, "");
  return el("td", { class: "digest", title: "before " + (e.before_digest || "none") +
    "\nafter " + (e.after_digest || "none") },
    el("code", {}, short(e.before_digest)), " → ", el("code", {}, short(e.after_digest)));
}

function renderAudit() {
  let seqs = [...audit.entries.keys()].sort((a, b) => b - a);
  // Without "Older", the newest page only: the rest is dropped as newer entries come.
  const kept = audit.floor === null ? seqs.slice(0, AUDIT_PAGE) : seqs.filter((q) => q >= audit.floor);
  const keep = new Set(kept);
  for (const q of seqs) if (!keep.has(q)) audit.entries.delete(q);
  seqs = kept;
  const oldest = seqs.length ? seqs[seqs.length - 1] : null;
  // The first entry, or the oldest the registry still keeps, is shown: nothing is older.
  const first = oldest !== null &&
    (oldest <= 1 || (audit.prunedBelow !== null && oldest <= audit.prunedBelow));
  $("audit-older").disabled = audit.loading || first || oldest === null;
  $("audit-range").textContent = oldest === null ? "no entries" :
    seqs.length + " entries, #" + oldest + " to #" + seqs[0] + (first ? " (the oldest kept)" : "");
  fill("audit", seqs.map((q) => audit.entries.get(q)), (list) => list.map(auditRow));
}

async function refreshAudit() {
  if (audit.entries.size === 0) {
    keepAudit((await api("GET", "/v1/audit?limit=" + AUDIT_PAGE)).entries);
  } else {
    let after = Math.max(...audit.entries.keys());
    for (;;) {
      const page = await api("GET", "/v1/audit?after=" + after + "&limit=" + AUDIT_MAX_PAGE);
      keepAudit(page.entries);
      if (page.entries.length < AUDIT_MAX_PAGE) break;
      after = page.next_after;
    }
  }
  renderAudit();
}

// The page before the oldest entry held: `after` so that the page ends just below it.
async function olderAudit() {
  if (audit.loading || audit.entries.size === 0) return;
  const oldest = Math.min(...audit.entries.keys());
  const limit = Math.min(AUDIT_PAGE, oldest - 1);
  audit.loading = true;
  renderAudit();
  try {
    showError(null);
    if (limit < 1) return;
    const page = await api("GET", "/v1/audit?after=" + (oldest - 1 - limit) + "&limit=" + limit);
    const older = page.entries.filter((e) => e.seq < oldest);
    if (older.length === 0) {
      audit.prunedBelow = oldest;
      return;
    }
    keepAudit(older);
    audit.floor = Math.min(...older.map((e) => e.seq));
  } catch (e) {
    showError(e);
  } finally {
    audit.loading = false;
    renderAudit();
  }
}

$("audit-older").addEventListener("click", olderAudit);
// Deferred after ui.js: refreshed with the page, emptied at sign-out.
views.push({ refresh: refreshAudit, reset: resetAudit });

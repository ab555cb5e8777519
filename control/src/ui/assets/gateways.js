// realmctl operator UI: the gateways view (/v1/gateways) — each gateway's applied table
// version, its lag behind the version realmctl pushes, the last push and its error, and
// where realmctl learnt of it. Runs after ui.js and uses its helpers (api, el, fill, views).
"use strict";

// How far a gateway is behind: versions between what it applied and what realmctl pushes.
function gatewayLag(g, target) {
  if (target === null || target === undefined) return "—";
  if (g.applied_version === null || g.applied_version === undefined) return "nothing applied yet";
  const lag = target - g.applied_version;
  return lag <= 0 ? "0" : lag + (lag === 1 ? " version" : " versions");
}

const gatewaysView = {
  async refresh() {
    const list = await api("GET", "/v1/gateways");
    const target = list.target_version;
    const behind = list.gateways.filter((g) => !g.in_sync).length;
    const d = list.discovery;
    $("gateways-status").textContent = "realmctl pushes table version " + (target ?? "—") + "; " +
      (list.gateways.length === 0 ? "no gateways" :
        behind === 0 ? "every gateway serves it" : behind + " of " + list.gateways.length + " behind") +
      (d ? " · discovery (" + d.provider + ") " + d.state + (d.error ? ": " + d.error : "") : "");
    fill("gateways", list, (l) => l.gateways.map((g) => el("tr", { "data-gateway": g.url },
      el("td", {}, g.url),
      el("td", {}, g.source === "kubernetes" ? "discovered (Kubernetes)" : "configured"),
      el("td", { class: "applied" }, g.applied_version ?? "—"),
      el("td", { class: "lag " + (g.in_sync ? "ok" : "bad") }, gatewayLag(g, target)),
      el("td", { class: g.in_sync ? "ok" : "bad" }, g.in_sync ? "yes" : "no"),
      el("td", {}, (g.last_result ?? "not tried yet") + (g.last_attempt_at ? " at " + g.last_attempt_at : "")),
      el("td", { class: "last-error" + (g.last_error ? " bad" : "") }, g.last_error || "—"),
      el("td", {}, g.last_success_at ?? "never"),
      el("td", {}, g.consecutive_failures))));
  },
  reset() {
    $("gateways-status").textContent = "";
  },
};

// Deferred after ui.js: the page is parsed and `views` exists.
views.push(gatewaysView);

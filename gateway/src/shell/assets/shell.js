// Realmgate built-in app shell: defines <z-frame> and, on the built-in page, renders the
// sidebar from the injected context and keeps the active app framed and the URL in sync.
// Plain JavaScript, no build step. The API is documented in docs/app-shell.md.
(() => {
  "use strict";

  const DEFAULT_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-popups " +
    "allow-popups-to-escape-sandbox allow-downloads allow-modals";
  const DEFAULT_TIMEOUT_MS = 10000;

  const ctxEl = document.getElementById("realmgate-context");
  let ctx = null;
  try { ctx = ctxEl ? JSON.parse(ctxEl.textContent) : null; } catch (e) { ctx = null; }

  const safePath = (p) => typeof p === "string" && p.startsWith("/") && !p.startsWith("//") &&
    !p.includes("\\");

  // <z-frame src="/todos/" timeout="10000" sandbox="…">: an app in an iframe, with a
  // MessageChannel bridge to the app's realmgate API (/.realmgate/shell/app.js).
  class ZFrame extends HTMLElement {
    static get observedAttributes() { return ["src"]; }

    constructor() {
      super();
      this._props = {};
      this._port = null;      // the port of the app that answered "ready"
      this._pending = null;   // the port offered in the last hello
      this._timer = 0;
      this._iframe = null;
      this._src = null;
      this._origin = null;
      this._onWindowMessage = this._onWindowMessage.bind(this);
    }

    connectedCallback() {
      if (!this._iframe) {
        this._iframe = document.createElement("iframe");
        this._iframe.setAttribute("sandbox", this.getAttribute("sandbox") || DEFAULT_SANDBOX);
        this._iframe.setAttribute("title", this.getAttribute("name") || "app");
        this._iframe.setAttribute("referrerpolicy", "same-origin");
        this._iframe.addEventListener("load", () => this._onLoad());
        this._error = document.createElement("div");
        this._error.className = "zframe-error";
        this._error.setAttribute("role", "alert");
        this._error.hidden = true;
      }
      window.addEventListener("message", this._onWindowMessage);
      const src = this.getAttribute("src");
      if (src && src !== this._src) this._load(src, false);
      if (!this._iframe.isConnected) this.append(this._iframe, this._error);
    }

    disconnectedCallback() {
      window.removeEventListener("message", this._onWindowMessage);
      clearTimeout(this._timer);
      this._closePorts();
    }

    attributeChangedCallback(name, old, value) {
      if (name === "src" && this._iframe && value && value !== this._src) this._load(value, false);
    }

    get props() { return this._props; }
    set props(value) {
      this._props = Object.assign({}, value || {});
      this._send({ type: "props", props: this._props });
    }
    get connected() { return this._port !== null; }
    get src() { return this._src; }
    get iframe() { return this._iframe; }

    navigate(path) { this._load(path, true); }
    reload() { if (this._src) this._load(this._src, true); }

    _load(src, replace) {
      let url;
      try { url = new URL(src, location.href); } catch (e) { return this._fail("bad-src", "Invalid app address."); }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        return this._fail("bad-src", "Only http(s) apps can be framed.");
      }
      this._src = url.origin === location.origin ? url.pathname + url.search + url.hash : url.href;
      this._origin = url.origin;
      if (this.getAttribute("src") !== this._src) this.setAttribute("src", this._src);
      this._closePorts();
      this._hideError();
      clearTimeout(this._timer);
      const ms = parseInt(this.getAttribute("timeout") || "", 10) || DEFAULT_TIMEOUT_MS;
      this._timer = setTimeout(() => this._fail("timeout",
        `The app did not load within ${Math.round(ms / 100) / 10} s.`), ms);
      if (replace && this._iframe.isConnected) {
        // No new history entry: the shell pushes its own for app switches.
        try { this._iframe.contentWindow.location.replace(url.href); return; } catch (e) { /* cross-origin */ }
      }
      this._iframe.src = url.href;
    }

    _onLoad() {
      if (!this._src) return;
      clearTimeout(this._timer);
      const sandbox = this._iframe.getAttribute("sandbox") || "";
      if (this._origin === location.origin && /(^|\s)allow-same-origin(\s|$)/.test(sandbox)) {
        // A same-origin app that loaded exposes its document; a refused or failed load leaves
        // the browser's error page, which is opaque to us.
        let doc = null;
        try { doc = this._iframe.contentDocument; } catch (e) { doc = null; }
        if (!doc) {
          this._fail("refused", "The app could not be displayed here (it refused to be framed or failed to load).");
        }
      }
      // The handshake itself starts from the app: its bridge announces itself once per
      // document (see _onWindowMessage), so a document never gets two channels.
    }

    _hello() {
      const win = this._iframe.contentWindow;
      if (!win || !this._origin) return;
      const channel = new MessageChannel();
      if (this._pending) this._pending.close();
      this._pending = channel.port1;
      channel.port1.onmessage = (e) => this._onPortMessage(channel.port1, e.data);
      const context = ctx ? { tenant: ctx.tenant, user: ctx.user, active: ctx.active } : null;
      // Never "*": only a document of the app's origin can receive the port.
      win.postMessage({ type: "realmgate:hello", version: 1, props: this._props, context },
        this._origin, [channel.port2]);
    }

    _onWindowMessage(e) {
      // The app's bridge asks for a channel; only our frame's window, only the app's origin.
      if (!this._iframe || e.source !== this._iframe.contentWindow || e.origin !== this._origin) return;
      if (e.data && e.data.type === "realmgate:announce") this._hello();
    }

    _onPortMessage(port, msg) {
      if (!msg || typeof msg.type !== "string") return;
      if (msg.type === "ready") {
        if (port !== this._pending) return;
        if (this._port && this._port !== port) this._port.close();
        this._port = port;
        clearTimeout(this._timer);
        this._hideError();
        this._emit("zframe-ready", { src: this._src });
        return;
      }
      if (port !== this._port) return;
      switch (msg.type) {
        case "event":
          if (typeof msg.name === "string") this._emit("zframe-event", { name: msg.name, detail: msg.detail });
          break;
        case "location":
          if (safePath(msg.path)) {
            this._src = msg.path;
            this.setAttribute("src", msg.path);
            this._emit("zframe-location", { path: msg.path, title: String(msg.title || "") });
          }
          break;
        case "navigate":
          if (safePath(msg.path)) this._emit("zframe-navigate", { path: msg.path });
          break;
        default:
          break;
      }
    }

    _send(msg) { if (this._port) this._port.postMessage(msg); }

    _closePorts() {
      if (this._port) this._port.close();
      if (this._pending && this._pending !== this._port) this._pending.close();
      this._port = null;
      this._pending = null;
    }

    _fail(reason, message) {
      clearTimeout(this._timer);
      if (this._error) {
        this._error.replaceChildren();
        const p = document.createElement("p");
        p.textContent = message;
        const retry = document.createElement("button");
        retry.type = "button";
        retry.textContent = "Retry";
        retry.addEventListener("click", () => this.reload());
        this._error.append(p, retry);
        this._error.dataset.reason = reason;
        this._error.hidden = false;
      }
      this._emit("zframe-error", { reason, message, src: this._src });
    }

    _hideError() { if (this._error) this._error.hidden = true; }

    _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true })); }
  }

  if (!customElements.get("z-frame")) customElements.define("z-frame", ZFrame);

  // ---- The built-in shell page (absent from a tenant's own shell HTML) ----
  const root = document.getElementById("rg-shell");
  if (!root || !ctx) return;

  const ICONS = {
    "check-square": "M9 11l3 3L22 4M21 12v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h11",
    "file-text": "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M16 13H8M16 17H8",
    "home": "M3 9l9-7 9 7v11a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2zM9 22V12h6v10",
    "settings": "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19.4 15a1.6 1.6 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.6 1.6 0 0 0-2.7 1.1V21a2 2 0 0 1-4 0v-.1A1.6 1.6 0 0 0 9 19.4a1.6 1.6 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1A1.6 1.6 0 0 0 3.3 14H3a2 2 0 0 1 0-4h.1A1.6 1.6 0 0 0 4.6 9a1.6 1.6 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.6 1.6 0 0 0 1.8.3H9a1.6 1.6 0 0 0 1-1.5V3a2 2 0 0 1 4 0v.1a1.6 1.6 0 0 0 1 1.5 1.6 1.6 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.6 1.6 0 0 0-.3 1.8V9a1.6 1.6 0 0 0 1.5 1H21a2 2 0 0 1 0 4h-.1a1.6 1.6 0 0 0-1.5 1z",
    "users": "M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM23 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8",
    "calendar": "M19 4H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zM16 2v4M8 2v4M3 10h18",
    "message-square": "M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z",
    "box": "M21 16V8a2 2 0 0 0-1-1.7l-7-4a2 2 0 0 0-2 0l-7 4A2 2 0 0 0 3 8v8a2 2 0 0 0 1 1.7l7 4a2 2 0 0 0 2 0l7-4a2 2 0 0 0 1-1.7z",
  };

  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    e.append(...children);
    return e;
  };

  const icon = (app) => {
    const name = (app.icon || "").split(":").pop();
    const d = ICONS[name];
    if (!d) return el("span", { class: "rg-icon rg-letter", "aria-hidden": "true" }, (app.name || "?").charAt(0).toUpperCase());
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    svg.append(path);
    return el("span", { class: "rg-icon", "aria-hidden": "true" }, svg);
  };

  // Route-prefix semantics, as the gateway decides: "/todos/" covers everything under it,
  // "/notes" covers "/notes" and "/notes/...".
  const covers = (prefix, path) => path.startsWith(prefix) &&
    (prefix.endsWith("/") || path.length === prefix.length || path.charAt(prefix.length) === "/");
  const appFor = (path) => {
    const bare = path.split(/[?#]/)[0];
    let best = null;
    for (const app of ctx.catalog) {
      if (covers(app.path, bare) && (!best || app.path.length > best.path.length)) best = app;
    }
    return best;
  };

  const tenantName = ctx.tenant.display_name || ctx.tenant.id;
  document.getElementById("rg-tenant").textContent = tenantName;
  const links = new Map();
  const list = document.getElementById("rg-apps");
  for (const app of ctx.catalog) {
    const a = el("a", { href: app.path, "data-app": app.path }, icon(app), el("span", { class: "rg-name" }, app.name), el("span", { class: "rg-badge" }));
    links.set(app.path, a);
    list.append(el("li", {}, a));
  }

  const user = document.getElementById("rg-user");
  if (ctx.user) {
    // Logout is a same-origin POST (a GET of the URL only asks to confirm): a form, not a link.
    const signOut = el("form", { method: "post", action: ctx.logout_url, class: "rg-logout" },
      el("button", { type: "submit", id: "rg-logout" }, "Sign out"));
    user.append(el("div", { class: "rg-user-name" }, ctx.user.name || ctx.user.subject), signOut);
  } else {
    user.append(el("a", { href: ctx.login_url + "?return_to=" + encodeURIComponent(location.pathname) }, "Sign in"));
  }

  const main = document.getElementById("rg-main");
  let frame = null;
  let active = null;

  const setActive = (app) => {
    active = app;
    for (const [path, a] of links) {
      if (app && path === app.path) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = app ? `${app.name} · ${tenantName}` : tenantName;
  };

  const home = () => {
    const cards = el("div", { class: "rg-cards" });
    for (const app of ctx.catalog) cards.append(el("a", { href: app.path, "data-app": app.path }, icon(app), el("span", {}, app.name)));
    const body = ctx.catalog.length ? cards : el("p", {}, "No apps yet.");
    return el("section", { class: "rg-home" }, el("h1", {}, tenantName), body);
  };

  const show = (path) => {
    const app = appFor(path);
    setActive(app);
    if (!app) {
      frame = null;
      main.replaceChildren(home());
      return;
    }
    if (!frame) {
      frame = el("z-frame", { name: app.name, src: path });
      frame.addEventListener("zframe-location", (e) => {
        const here = location.pathname + location.search + location.hash;
        if (e.detail.path !== here) history.replaceState(history.state, "", e.detail.path);
        setActive(appFor(e.detail.path));
      });
      frame.addEventListener("zframe-navigate", (e) => go(e.detail.path));
      frame.addEventListener("zframe-event", (e) => {
        if (e.detail.name === "badge" && active) {
          const badge = links.get(active.path) && links.get(active.path).querySelector(".rg-badge");
          if (badge) badge.textContent = e.detail.detail == null ? "" : String(e.detail.detail);
        }
      });
      main.replaceChildren(frame);
    } else {
      frame.navigate(path);
    }
  };

  const go = (path) => {
    if (!safePath(path)) return;
    if (!appFor(path) && path !== "/") { location.assign(path); return; }
    history.pushState({ realmgate: true }, "", path);
    show(path);
  };

  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[data-app]");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    go(a.getAttribute("href"));
  });
  window.addEventListener("popstate", () => show(location.pathname + location.search + location.hash));
  show(location.pathname + location.search + location.hash);
})();

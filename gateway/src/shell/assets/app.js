// Realmgate app-side bridge for apps framed by <z-frame>: window.realmgate.
// Include with <script src="/.realmgate/shell/app.js"></script>. Documented in docs/app-shell.md.
(() => {
  "use strict";
  if (window.realmgate) return;

  const script = document.currentScript;
  // Origins allowed to be our shell: the page's own origin unless the app names others.
  const allowed = (script && script.dataset.shellOrigin ? script.dataset.shellOrigin.split(/\s+/) : [location.origin])
    .filter(Boolean);
  const framed = window.parent !== window;

  let port = null;
  let props = {};
  let context = null;
  const queue = [];
  const propsListeners = new Set();
  let resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });
  if (!framed) resolveReady(null);

  const send = (msg) => { if (port) port.postMessage(msg); else queue.push(msg); };
  const here = () => location.pathname + location.search + location.hash;
  const reportLocation = () => send({ type: "location", path: here(), title: document.title });

  const setProps = (next) => {
    props = Object.assign({}, next || {});
    for (const cb of propsListeners) { try { cb(props); } catch (e) { console.error(e); } }
  };

  window.addEventListener("message", (e) => {
    // Only our parent, only an allowed origin, only with a port.
    if (e.source !== window.parent || !allowed.includes(e.origin)) return;
    const d = e.data;
    if (!d || d.type !== "realmgate:hello" || !e.ports || !e.ports[0]) return;
    if (port) port.close();
    port = e.ports[0];
    port.onmessage = (m) => {
      if (m.data && m.data.type === "props") setProps(m.data.props);
    };
    context = d.context || null;
    port.postMessage({ type: "ready", version: 1 });
    reportLocation();
    while (queue.length) port.postMessage(queue.shift());
    setProps(d.props);
    resolveReady({ props, context });
  });

  // Keep the shell's URL in step with the app's own navigation.
  for (const fn of ["pushState", "replaceState"]) {
    const original = history[fn];
    history[fn] = function (...args) {
      const result = original.apply(this, args);
      if (port) reportLocation();
      return result;
    };
  }
  window.addEventListener("popstate", () => { if (port) reportLocation(); });
  window.addEventListener("hashchange", () => { if (port) reportLocation(); });

  window.realmgate = Object.freeze({
    /** Whether this document is inside a frame at all. */
    get framed() { return framed; },
    /** Whether the shell answered the handshake. */
    get connected() { return port !== null; },
    /** The props the shell set on its <z-frame> (a copy). */
    get props() { return Object.assign({}, props); },
    /** {tenant, user, active} from the shell, once connected. */
    get context() { return context; },
    /** Resolves with {props, context} once connected; with null when not framed. */
    ready,
    /** Calls cb(props) now if connected and on every change; returns an unsubscribe function. */
    onProps(cb) {
      propsListeners.add(cb);
      if (port) cb(Object.assign({}, props));
      return () => propsListeners.delete(cb);
    },
    /** Sends an event to the shell (queued until connected): `zframe-event` on the element. */
    emit(name, detail) { send({ type: "event", name: String(name), detail }); },
    /** Asks the shell to show another path (another app, or the shell's home); top-level when not framed. */
    navigate(path) {
      if (port) send({ type: "navigate", path: String(path) });
      else if (!framed) location.assign(path);
    },
  });

  // Ask the shell for a channel, once per document. Never "*": a parent of another origin
  // never sees the message.
  if (framed) {
    for (const origin of allowed) {
      try { window.parent.postMessage({ type: "realmgate:announce" }, origin); } catch (e) { /* bad origin */ }
    }
  }
})();

// Todos: tells the shell how many todos are open (a badge on its sidebar link).
(() => {
  "use strict";
  const open = Number(document.body.dataset.open || 0);
  if (window.realmgate) {
    window.realmgate.emit("badge", open > 0 ? open : null);
    window.realmgate.onProps((props) => {
      if (props && props.theme) document.documentElement.dataset.theme = String(props.theme);
    });
  }
  const input = document.getElementById("new-title");
  if (input && !("ontouchstart" in window)) input.focus();
})();

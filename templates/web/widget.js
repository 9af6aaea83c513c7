/* clusterbot chat widget: one line on any page opens a chat panel.
 *
 *   <script src="https://chat.example.org/widget.js" data-lang="it" defer></script>
 *
 * The panel lives in a shadow root, so the page's styles do not leak in, while the page's
 * CSS custom properties (--clusterbot-accent, --clusterbot-bg, ...) still reach it.
 * If the chat server is down, no launcher appears and the page is unchanged.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.ClusterbotWidget) {
    return;
  }
  window.ClusterbotWidget = true;
  var base = script.src.replace(/\/widget\.js(\?.*)?(#.*)?$/, "");
  var wanted = (script.getAttribute("data-lang") || document.documentElement.lang || "it").slice(0, 2);
  var lang = wanted === "en" ? "en" : "it";

  function start() {
    var host = document.createElement("div");
    host.className = "clusterbot-widget";
    document.body.appendChild(host);
    var shadow = host.attachShadow({ mode: "open" });
    var style = document.createElement("link");
    style.rel = "stylesheet";
    style.href = base + "/chat/chat.css";
    shadow.appendChild(style);
    var loader = document.createElement("script");
    loader.src = base + "/chat/chat.js";
    loader.onload = function () { build(shadow); };
    document.head.appendChild(loader);
  }

  function build(shadow) {
    var T = (window.CLUSTERBOT_SETUP && window.CLUSTERBOT_SETUP.texts[lang]) || {};
    var wrapper = document.createElement("div");
    wrapper.className = "cb-widget";
    var launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "cb-launcher";
    launcher.textContent = T.open || "Chat";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "cb-panel");
    var panel = document.createElement("div");
    panel.className = "cb-panel";
    panel.id = "cb-panel";
    panel.hidden = true;
    wrapper.appendChild(panel);
    wrapper.appendChild(launcher);
    shadow.appendChild(wrapper);
    var chat = null;

    function close() {
      panel.hidden = true;
      launcher.hidden = false;
      launcher.setAttribute("aria-expanded", "false");
      launcher.focus();
    }

    launcher.addEventListener("click", function () {
      panel.hidden = false;
      launcher.hidden = true;
      launcher.setAttribute("aria-expanded", "true");
      if (!chat) {
        chat = window.ClusterbotChat.mount(panel, {
          base: base,
          lang: lang,
          onClose: close,
          // The launcher speaks the conversation's language too.
          onLanguage: function (chosen, texts) { launcher.textContent = texts.open || "Chat"; }
        });
      }
      chat.focus();
    });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        close();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

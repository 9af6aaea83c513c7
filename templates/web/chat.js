/* clusterbot web chat: plain JavaScript, no dependencies, no build step.
 *
 * Safety: every string from the server is shown with textContent; the only markup built
 * from data is a link, and the server sends one only for a URL of the call's own facts.
 * The anonymous session token lives in localStorage and travels in a header, never in a
 * URL or a cookie. The event stream is read with fetch() so that it can carry that header.
 */
(function () {
  "use strict";

  var SETUP = window.CLUSTERBOT_SETUP || { texts: {}, email: "", maxText: 10000 };
  var HEADER = "X-Chat-Session";
  var FIELD_AUTOCOMPLETE = {
    name: "name",
    email: "email",
    organisation: "organization",
    country: "country-name",
    question: "off"
  };
  var counter = 0;

  function texts(lang) {
    return SETUP.texts[lang] || SETUP.texts.en || {};
  }

  function fill(text, values) {
    return String(text || "").replace(/\{(\w+)\}/g, function (whole, key) {
      return values && key in values ? String(values[key]) : whole;
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, attrs[key]);
    });
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function safeHref(href) {
    return typeof href === "string" && /^(https?:\/\/|mailto:)[^\s]+$/.test(href) ? href : null;
  }

  function memoryStore() {
    var data = {};
    return {
      get: function (key) { return data[key] || null; },
      set: function (key, value) { data[key] = value; },
      remove: function (key) { delete data[key]; }
    };
  }

  function storage() {
    try {
      var probe = "clusterbot.probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return {
        get: function (key) { return window.localStorage.getItem(key); },
        set: function (key, value) { window.localStorage.setItem(key, value); },
        remove: function (key) { window.localStorage.removeItem(key); }
      };
    } catch (e) {
      // Storage blocked (private mode, strict settings): the chat still works until reload.
      return memoryStore();
    }
  }

  function mount(root, options) {
    options = options || {};
    var base = (options.base || "").replace(/\/+$/, "");
    var lang = options.lang === "it" || options.lang === "en" ? options.lang : "it";
    var T = texts(lang);
    var store = storage();
    var key = "clusterbot.session@" + (base || window.location.origin);
    var token = store.get(key);
    var seen = {};
    var lastId = 0;
    var busy = false;
    var stream = null;
    var retryDelay = 1000;
    var retryTimer = null;
    var broken = false;
    var id = "cb" + ++counter;

    // ---------------------------------------------------------------- the DOM
    var section = el("section", { "class": "cb-chat", "aria-labelledby": id + "-title", lang: lang });
    var header = el("div", { "class": "cb-header" });
    var heading = el("h2", { "class": "cb-title", id: id + "-title" }, T.title);
    header.appendChild(heading);
    var closer = null;
    if (options.onClose) {
      closer = el("button", { type: "button", "class": "cb-close", "aria-label": T.close }, "×");
      closer.addEventListener("click", options.onClose);
      header.appendChild(closer);
    }
    var subtitle = el("p", { "class": "cb-subtitle" }, T.subtitle);
    var log = el("div", {
      "class": "cb-log",
      role: "log",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-label": T.log_label,
      tabindex: "0"
    });
    var status = el("p", { "class": "cb-status", role: "status", "aria-live": "polite" });
    var form = el("form", { "class": "cb-form", novalidate: "" });
    var label = el("label", { "class": "cb-label", "for": id + "-input" }, T.input_label);
    var row = el("div", { "class": "cb-row" });
    var input = el("textarea", {
      id: id + "-input",
      "class": "cb-input",
      rows: "2",
      maxlength: String(SETUP.maxText || 10000),
      "aria-describedby": id + "-hint " + id + "-error",
      "aria-invalid": "false",
      autocomplete: "off"
    });
    var send = el("button", { type: "submit", "class": "cb-send" }, T.send);
    var hint = el("p", { "class": "cb-hint", id: id + "-hint" }, T.input_hint);
    var error = el("p", { "class": "cb-error", id: id + "-error", "aria-live": "assertive" });
    error.hidden = true;
    row.appendChild(input);
    row.appendChild(send);
    form.appendChild(label);
    form.appendChild(row);
    form.appendChild(error);
    form.appendChild(hint);
    section.appendChild(header);
    section.appendChild(subtitle);
    section.appendChild(log);
    section.appendChild(status);
    section.appendChild(form);
    root.appendChild(section);

    // ---------------------------------------------------------------- rendering
    function say(text) {
      status.textContent = text || "";
      status.classList.toggle("cb-problem", !!text);
    }

    function showError(text) {
      error.textContent = text || "";
      error.hidden = !text;
      input.setAttribute("aria-invalid", text ? "true" : "false");
    }

    function setLanguage(wanted) {
      // The conversation's language (the user's /language choice, or the one detected):
      // the page's own labels follow it, like the bot's replies.
      if ((wanted !== "it" && wanted !== "en") || wanted === lang) {
        return;
      }
      lang = wanted;
      T = texts(lang);
      section.setAttribute("lang", lang);
      heading.textContent = T.title;
      if (closer) {
        closer.setAttribute("aria-label", T.close);
      }
      subtitle.textContent = T.subtitle;
      log.setAttribute("aria-label", T.log_label);
      hint.textContent = T.input_hint;
      send.textContent = busy ? T.sending : T.send;
      label.textContent = (input.dataset.field && T["field_" + input.dataset.field]) || T.input_label;
      Array.prototype.forEach.call(log.querySelectorAll(".cb-buttons"), function (group) {
        group.setAttribute("aria-label", T.choices);
      });
      if (root.ownerDocument && root.ownerDocument.body.classList.contains("cb-page")) {
        // The chat is the whole page: its language and title too.
        root.ownerDocument.documentElement.lang = lang;
        root.ownerDocument.title = T.title;
      }
      if (options.onLanguage) {
        options.onLanguage(lang, T);
      }
    }

    function setField(field, maxlength) {
      label.textContent = (field && T["field_" + field]) || T.input_label;
      input.setAttribute("autocomplete", (field && FIELD_AUTOCOMPLETE[field]) || "off");
      input.setAttribute("inputmode", field === "email" ? "email" : "text");
      input.setAttribute("maxlength", String(maxlength || SETUP.maxText || 10000));
      input.dataset.field = field || "";
    }

    function render(message) {
      if (message.id) {
        if (seen[message.id]) {
          return;
        }
        seen[message.id] = true;
        lastId = Math.max(lastId, message.id);
      }
      var mine = message.from === "user";
      var item = el("div", { "class": "cb-msg " + (mine ? "cb-user" : "cb-bot") });
      item.appendChild(el("span", { "class": "cb-sr" }, (mine ? T.you : T.bot) + ": "));
      if (message.title) {
        item.appendChild(el("strong", { "class": "cb-msg-title" }, message.title));
        item.appendChild(document.createTextNode("\n"));
      }
      (message.parts || []).forEach(function (part) {
        var href = mine ? null : safeHref(part.href);
        if (href) {
          var link = el("a", { href: href, rel: "noopener noreferrer", target: "_blank" }, part.text);
          item.appendChild(link);
        } else {
          item.appendChild(document.createTextNode(String(part.text || "")));
        }
      });
      if (!mine && message.buttons && message.buttons.length) {
        var group = el("div", { "class": "cb-buttons", role: "group", "aria-label": T.choices });
        message.buttons.forEach(function (button) {
          var b = el("button", { type: "button", "class": "cb-button" }, button.label);
          b.addEventListener("click", function () {
            post({ button: String(button.id) }, null);
          });
          group.appendChild(b);
        });
        item.appendChild(group);
      }
      log.appendChild(item);
    }

    function prune() {
      // Only the choices of the bot's latest turn stay: older ones would be stale.
      var items = log.querySelectorAll(".cb-msg");
      var afterUser = false;
      for (var i = items.length - 1; i >= 0; i--) {
        if (items[i].classList.contains("cb-user")) {
          afterUser = true;
        } else if (afterUser) {
          var old = items[i].querySelector(".cb-buttons");
          if (old) {
            old.parentNode.removeChild(old);
          }
        }
      }
    }

    function renderAll(messages) {
      messages.forEach(render);
      prune();
      log.scrollTop = log.scrollHeight;
    }

    function setBusy(value) {
      busy = value;
      send.disabled = value;
      send.textContent = value ? T.sending : T.send;
      Array.prototype.forEach.call(log.querySelectorAll(".cb-button"), function (b) {
        b.disabled = value;
      });
    }

    // ---------------------------------------------------------------- talking to the server
    function forgetToken() {
      token = null;
      store.remove(key);
      if (stream) {
        stream.abort();
        stream = null;
      }
    }

    function post(payload, typed) {
      if (busy) {
        return;
      }
      payload.lang = lang;
      setBusy(true);
      var headers = { "Content-Type": "application/json" };
      if (token) {
        headers[HEADER] = token;
      }
      fetch(base + "/chat/api/message", {
        method: "POST",
        headers: headers,
        body: JSON.stringify(payload),
        cache: "no-store",
        credentials: "omit"
      })
        .then(function (response) {
          return response.json().then(
            function (data) { return { ok: response.ok, status: response.status, data: data }; },
            function () { return { ok: false, status: response.status, data: {} }; }
          );
        })
        .then(function (result) {
          setBusy(false);
          if (!result.ok) {
            failed(result.status, typed);
            return;
          }
          var data = result.data;
          say(broken ? T.reconnected : "");
          broken = false;
          if (data.forgotten) {
            forgetToken();
            log.textContent = "";
            seen = {};
            lastId = 0;
          }
          if (data.session) {
            token = data.session;
            store.set(key, token);
          }
          setLanguage(data.lang);
          renderAll(data.messages || []);
          setField(data.field || null, data.maxlength);
          if (data.error) {
            showError(data.error);
            if (typed !== null) {
              // The refused value comes back for correcting, not retyping.
              input.value = typed;
              input.select();
            }
          } else {
            showError("");
          }
          if (token && !stream) {
            connect();
          }
          input.focus();
        })
        .catch(function () {
          setBusy(false);
          failed(0, typed);
        });
    }

    function failed(code, typed) {
      if (typed !== null) {
        // Nothing typed is lost: it stays in the box to send again.
        input.value = typed;
      }
      var values = { email: SETUP.email, max: SETUP.maxText };
      if (code === 429) {
        showError(fill(T.too_fast, values));
      } else if (code === 413) {
        showError(fill(T.too_long, values));
      } else if (code === 403) {
        showError(fill(T.forbidden, values));
      } else {
        broken = true;
        showError(fill(T.unreachable, values));
      }
      input.focus();
    }

    function connect() {
      if (!token || stream) {
        return;
      }
      var controller = new AbortController();
      stream = controller;
      var headers = { "Last-Event-ID": String(lastId) };
      headers[HEADER] = token;
      fetch(base + "/chat/api/events", {
        headers: headers,
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal
      })
        .then(function (response) {
          if (!response.ok || !response.body) {
            throw new Error("stream " + response.status);
          }
          if (broken) {
            say(T.reconnected);
            broken = false;
          }
          retryDelay = 1000;
          var reader = response.body.getReader();
          var decoder = new TextDecoder();
          var buffer = "";
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) {
                return;
              }
              buffer += decoder.decode(chunk.value, { stream: true });
              var at;
              while ((at = buffer.indexOf("\n\n")) >= 0) {
                handleEvent(buffer.slice(0, at));
                buffer = buffer.slice(at + 2);
              }
              return pump();
            });
          }
          return pump();
        })
        .then(function () {
          if (stream === controller) {
            stream = null;
            retry();
          }
        })
        .catch(function () {
          if (stream === controller) {
            stream = null;
            broken = true;
            say(fill(T.reconnecting, {}));
            retry();
          }
        });
    }

    function retry() {
      if (retryTimer || !token) {
        return;
      }
      retryTimer = window.setTimeout(function () {
        retryTimer = null;
        connect();
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    }

    function handleEvent(block) {
      var kind = "message";
      var data = "";
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) {
          kind = line.slice(6).trim();
        } else if (line.indexOf("data:") === 0) {
          data += line.slice(5).trim();
        }
      });
      if (!data) {
        return;
      }
      var value;
      try {
        value = JSON.parse(data);
      } catch (e) {
        return;
      }
      if (kind === "ready") {
        setLanguage(value.lang);
        if (!log.querySelector(".cb-msg")) {
          // A session the server no longer knows (expired): start afresh.
          post({ command: "start" }, null);
        }
        return;
      }
      renderAll([value]);
    }

    // ---------------------------------------------------------------- input
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value;
      if (!text.trim()) {
        showError(T.empty);
        input.focus();
        return;
      }
      input.value = "";
      post({ text: text }, text);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (typeof form.requestSubmit === "function") {
          form.requestSubmit();
        } else {
          form.dispatchEvent(new Event("submit", { cancelable: true }));
        }
      }
    });
    input.addEventListener("input", function () {
      if (!error.hidden && input.getAttribute("aria-invalid") === "true" && !busy) {
        // The message stays until the next send, but the field no longer claims to be wrong.
        input.setAttribute("aria-invalid", "false");
      }
    });

    if (token) {
      connect();
    } else {
      post({ command: "start" }, null);
    }
    return { focus: function () { input.focus(); }, element: section };
  }

  window.ClusterbotChat = { mount: mount };

  function autoMount() {
    var nodes = document.querySelectorAll("[data-clusterbot-chat]");
    Array.prototype.forEach.call(nodes, function (node) {
      if (!node.dataset.mounted) {
        node.dataset.mounted = "1";
        mount(node, { base: node.getAttribute("data-base") || "", lang: node.getAttribute("data-lang") });
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", autoMount);
  } else {
    autoMount();
  }
})();

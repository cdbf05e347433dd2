// taskloom dashboard: theme toggle, confirmations, live updates (server-sent events) and
// the virtualised history list. Plain JavaScript, no dependencies, no inline handlers.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "/dashboard";

  // -- theme ---------------------------------------------------------------------
  var toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var root = document.documentElement;
      var current = root.getAttribute("data-theme");
      if (!current) {
        current = window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
      }
      var next = current === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("taskloom-theme", next); } catch (e) { /* ignore */ }
    });
  }

  // -- confirmations for destructive actions -----------------------------------------
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // -- live updates ----------------------------------------------------------------
  var live = document.body.getAttribute("data-live");
  if (live && window.EventSource) {
    var ids = [];
    var watched = document.body.getAttribute("data-instance");
    if (watched) {
      ids.push(watched);
    } else {
      document.querySelectorAll("tr[data-id]").forEach(function (row) {
        if (ids.length < 200) { ids.push(row.getAttribute("data-id")); }
      });
    }
    var table = document.getElementById("instances");
    var firstPage = table && table.getAttribute("data-first-page") === "1";
    if (ids.length || firstPage) {
      var url = base + "/events?" + ids.map(function (id) {
        return "id=" + encodeURIComponent(id);
      }).join("&");
      if (firstPage) {
        // The first page also hears of newer instances matching its filters.
        var filters = window.location.search.replace(/^\?/, "");
        url += "&top=" + encodeURIComponent(ids[0] || "") + (filters ? "&" + filters : "");
      }
      var source = new EventSource(url);
      source.addEventListener("newer", function () {
        var note = document.getElementById("live-note");
        if (note) { note.hidden = false; }
      });
      var first = true;
      var seen = null;
      source.addEventListener("instances", function (message) {
        var changes;
        try { changes = JSON.parse(message.data); } catch (e) { return; }
        if (live === "detail" && first) {
          // The snapshot: remember the history length the page was rendered with.
          first = false;
          seen = changes.length ? changes[0].history : null;
          var total = parseInt((document.getElementById("history") || document.body)
            .getAttribute("data-total"), 10);
          if (seen !== null && !isNaN(total) && seen === total &&
              changes[0].status === statusText()) { return; }
        }
        onChanges(live, changes);
      });
      window.addEventListener("pagehide", function () { source.close(); });
    }
  }

  function statusText() {
    var badge = document.getElementById("status-badge");
    return badge ? badge.textContent : "";
  }

  function onChanges(kind, changes) {
    if (kind === "instances") {
      var table = document.getElementById("instances");
      if (!table) { return; }
      var unseen = false;
      changes.forEach(function (change) {
        var row = table.querySelector('tr[data-id="' + cssEscape(change.id) + '"]');
        if (!row) { unseen = true; return; }
        var badge = row.querySelector("[data-status]");
        if (badge && badge.textContent !== change.status) {
          badge.textContent = change.status;
          badge.className = "badge s-" + change.status;
          row.classList.add("changed");
        }
        var updated = row.querySelector("[data-updated]");
        if (updated && change.updated) { updated.textContent = change.updated; }
      });
      if (unseen) {
        var note = document.getElementById("live-note");
        if (note) { note.hidden = false; }
      }
    } else if (kind === "detail") {
      var note2 = document.getElementById("live-note");
      if (note2 && changes.length) {
        note2.hidden = false;
        var status = document.getElementById("status-badge");
        var last = changes[changes.length - 1];
        if (status && last.status) {
          status.textContent = last.status;
          status.className = "badge s-" + last.status;
        }
      }
    }
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : String(text).replace(/["\\]/g, "\\$&");
  }

  // -- whole payloads on demand -------------------------------------------------------
  var detailId = document.body.getAttribute("data-instance");
  document.querySelectorAll("button.more[data-what]").forEach(function (button) {
    button.addEventListener("click", function () {
      var url = base + "/api/payload?id=" + encodeURIComponent(detailId) +
        "&what=" + encodeURIComponent(button.getAttribute("data-what"));
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (data) {
          var pre = button.parentNode.querySelector("pre");
          if (pre && typeof data.text === "string") { pre.textContent = data.text; }
          button.hidden = true;
        });
    });
  });

  // -- virtualised history -----------------------------------------------------------
  var box = document.getElementById("history");
  if (box) { historyList(box); }

  function historyList(box) {
    var total = parseInt(box.getAttribute("data-total"), 10) || 0;
    var iid = box.getAttribute("data-instance");
    var rowHeight = 28, pageSize = 200, overscan = 10;
    var pages = {};     // page number -> array of rows (or "loading")
    var spacer = document.createElement("div");
    spacer.className = "spacer";
    spacer.style.height = (total * rowHeight) + "px";
    box.appendChild(spacer);
    var shown = {};     // seq -> element

    function fetchPage(n) {
      if (pages[n]) { return; }
      pages[n] = "loading";
      var url = base + "/api/history?id=" + encodeURIComponent(iid) +
        "&from=" + (n * pageSize) + "&limit=" + pageSize;
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).then(function (data) {
        pages[n] = data.events;
        render();
      }).catch(function () { delete pages[n]; });
    }

    function rowFor(seq, ev) {
      var row = document.createElement("div");
      row.className = "row";
      row.setAttribute("role", "listitem");
      row.setAttribute("data-seq", String(seq));
      row.style.top = (seq * rowHeight) + "px";
      var cells = [["seq", String(seq)], ["ts", ev.timestamp], ["kind", ev.kind], ["sum", ev.summary]];
      cells.forEach(function (cell) {
        var span = document.createElement("span");
        span.className = cell[0];
        span.textContent = cell[1] || "";
        row.appendChild(span);
      });
      if (ev.has_payload) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = "payload";
        button.setAttribute("aria-label", "Show the payload of event " + seq);
        button.addEventListener("click", function () { showPayload(seq); });
        row.appendChild(button);
      }
      return row;
    }

    function render() {
      var first = Math.max(0, Math.floor(box.scrollTop / rowHeight) - overscan);
      var last = Math.min(total - 1, Math.ceil((box.scrollTop + box.clientHeight) / rowHeight) + overscan);
      var keep = {};
      for (var seq = first; seq <= last; seq++) {
        var n = Math.floor(seq / pageSize);
        var page = pages[n];
        if (!page) { fetchPage(n); continue; }
        if (page === "loading") { continue; }
        var ev = page[seq - n * pageSize];
        if (!ev) { continue; }
        keep[seq] = true;
        if (!shown[seq]) {
          shown[seq] = rowFor(seq, ev);
          spacer.appendChild(shown[seq]);
        }
      }
      Object.keys(shown).forEach(function (key) {
        if (!keep[key]) { spacer.removeChild(shown[key]); delete shown[key]; }
      });
      box.setAttribute("data-first", String(first));
      box.setAttribute("data-last", String(last));
    }

    var pending = false;
    box.addEventListener("scroll", function () {
      if (pending) { return; }
      pending = true;
      window.requestAnimationFrame(function () { pending = false; render(); });
    });
    render();

    var out = document.getElementById("payload");
    function showPayload(seq) {
      var url = base + "/api/payload?id=" + encodeURIComponent(iid) + "&seq=" + seq;
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (data) {
          if (!out) { return; }
          out.hidden = false;
          out.querySelector("h3").textContent = "Event " + seq + " (" + data.kind + ")";
          out.querySelector("pre").textContent = data.text;
          out.querySelector("pre").focus();
        });
    }
  }
})();

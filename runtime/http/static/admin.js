// The admin page: the REST API and the event stream of this runtime, read with its token.
// No framework and no build step. Data from the server is only ever set as text (never
// as HTML). The token lives in this tab's session storage and goes in the Authorization
// header (also for the event stream, read with fetch rather than EventSource, which
// cannot send headers), never in a URL.
"use strict";

(() => {
  const API = "/api/v1/agent/workspaces";
  const TOKEN_KEY = "agent-workspaces.token";
  const REFRESH_MS = 5000;
  const RECONNECT_MS = 2000;
  const MAX_EVENTS = 100;
  const HISTORY = 30; // events before the snapshot shown (not applied) under "Recent events"
  const TOPICS = "workspace,alert,provider,actor,github";

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    workspaces: new Map(), // id -> record (the snapshot, then kept current by events)
    rows: new Map(), // id -> {row, cells}
    stats: null,
    snapshotSeq: 0, // the seq the snapshot reflects: later events are applied to it
    lastSeq: null, // the seq of the last event received (Last-Event-ID on reconnect)
    stream: null, // the AbortController of the open event stream
    timer: null,
  };

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message);
      this.status = status;
      this.code = error.code;
    }
  }

  // ------------------------------------------------------------------ the API

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || { code: "internal", message: `HTTP ${response.status}` };
      if (response.status === 401) signOut(error.message);
      throw new ApiError(response.status, error);
    }
    return data;
  }

  // ------------------------------------------------------------------ formatting

  function text(tag, content, className) {
    const element = document.createElement(tag);
    if (content !== undefined && content !== null) element.textContent = String(content);
    if (className) element.className = className;
    return element;
  }

  function duration(seconds) {
    const s = Math.abs(seconds);
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min`;
    if (s < 36 * 3600) return `${(s / 3600).toFixed(1).replace(/\.0$/, "")} h`;
    return `${(s / 86400).toFixed(1).replace(/\.0$/, "")} d`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
  }

  function clock(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
  }

  function now() {
    return Date.now() / 1000;
  }

  // A usage bar: pct (0-100, or null when not measured yet) and a caption.
  function bar(pct, caption) {
    const wrap = text("div", null, "usage");
    const track = text("div", null, "bar");
    const fill = text("span");
    const known = pct !== null && pct !== undefined;
    const clamped = known ? Math.max(0, Math.min(100, pct)) : 0;
    fill.style.width = `${clamped}%`;
    if (clamped >= 90) fill.className = "high";
    else if (clamped >= 75) fill.className = "warn";
    track.appendChild(fill);
    wrap.appendChild(track);
    wrap.appendChild(text("small", known ? caption || `${pct.toFixed(0)}%` : "–"));
    return wrap;
  }

  function replace(element, ...children) {
    element.replaceChildren(...children);
  }

  // ------------------------------------------------------------------ rendering

  function renderProviders(providers) {
    const body = $("providers").tBodies[0];
    replace(
      body,
      ...providers.map((provider) => {
        const row = document.createElement("tr");
        row.dataset.name = provider.name;
        const health = text("td");
        health.appendChild(
          text("span", provider.healthy ? "healthy" : "unhealthy", `badge ${provider.healthy ? "ok" : "bad"}`),
        );
        row.append(
          text("td", provider.name, "mono"),
          health,
          text("td", provider.runtime),
          text("td", provider.workspaces),
          text("td", provider.checked_at ? `${duration(now() - provider.checked_at)} ago` : "–"),
          text("td", provider.detail, "detail"),
        );
        return row;
      }),
    );
  }

  function renderHost(stats) {
    const host = stats.host;
    const list = text("dl", null, "pairs");
    const add = (label, value) => list.append(text("dt", label), value instanceof Node ? value : text("dd", value));
    const cell = (child) => {
      const dd = text("dd");
      dd.appendChild(child);
      return dd;
    };
    add("CPU", cell(bar(host.cpu_pct)));
    add("Memory", cell(bar(host.mem_pct)));
    add("Disk", cell(bar(host.disk_pct)));
    add("Workspaces", `${stats.capacity.active} of ${stats.capacity.limit} slots`);
    if (host.reserved_cpu !== undefined) {
      const cpus = `${host.reserved_cpu} CPU${host.reserved_cpu === 1 ? "" : "s"}`;
      add("Reserved", `${cpus}, ${bytes(host.reserved_memory_bytes)}`);
    }
    replace($("host"), list);
  }

  function renderPool(pool) {
    const list = text("dl", null, "pairs");
    const add = (label, value) => list.append(text("dt", label), text("dd", value));
    add("Warm", `${pool.size} of ${pool.target}`);
    add("Booting", pool.booting);
    add("Claims", pool.claims);
    add("Misses", pool.misses);
    add("Evictions", pool.evictions);
    add("Refill failures", pool.refill_failures);
    replace($("pool"), list);
  }

  function renderAlerts(alerts) {
    $("alert-count").textContent = alerts.length ? String(alerts.length) : "";
    if (!alerts.length) {
      replace($("alerts"), text("li", "None.", "muted"));
      return;
    }
    replace(
      $("alerts"),
      ...alerts.map((alert) => {
        const item = text("li", null, "alert");
        item.append(text("strong", alert.key), text("span", ` ${alert.message}`));
        return item;
      }),
    );
  }

  function workspaceRow(id) {
    let entry = state.rows.get(id);
    if (entry) return entry;
    const row = document.createElement("tr");
    row.dataset.id = id;
    const names = ["id", "state", "provider", "image", "age", "expires", "cpu", "memory", "disk", "pool"];
    const cells = {};
    for (const name of names) {
      cells[name] = text("td", null, name);
      row.appendChild(cells[name]);
    }
    const actions = text("td", null, "actions");
    const ttl = document.createElement("select");
    ttl.className = "ttl";
    ttl.title = "New time to live, from now";
    for (const [label, seconds] of [["15 min", 900], ["1 h", 3600], ["4 h", 14400], ["24 h", 86400]]) {
      const option = text("option", label);
      option.value = String(seconds);
      if (seconds === 3600) option.selected = true;
      ttl.appendChild(option);
    }
    const extend = text("button", "Extend", "extend");
    extend.type = "button";
    extend.dataset.id = id;
    const destroy = text("button", "Destroy", "destroy");
    destroy.type = "button";
    destroy.dataset.id = id;
    actions.append(ttl, extend, destroy);
    row.appendChild(actions);
    entry = { row, cells, ttl };
    state.rows.set(id, entry);
    return entry;
  }

  function renderWorkspaces() {
    const body = $("workspaces").tBodies[0];
    const records = [...state.workspaces.values()].sort((a, b) => b.created_at - a.created_at);
    const usage = (state.stats && state.stats.usage) || {};
    for (const [id, entry] of state.rows) {
      if (!state.workspaces.has(id)) {
        entry.row.remove();
        state.rows.delete(id);
      }
    }
    records.forEach((record, index) => {
      const { row, cells } = workspaceRow(record.id);
      const used = usage[record.id] || {};
      cells.id.textContent = record.id;
      replace(cells.state, text("span", record.state, `badge state-${record.state}`));
      if (record.error) cells.state.appendChild(text("small", ` ${record.error}`, "error"));
      cells.provider.textContent = `${record.provider} (${record.runtime})`;
      cells.image.textContent = record.image;
      cells.age.textContent = duration(now() - record.created_at);
      cells.expires.textContent =
        record.expires_at === null ? "never" : record.expires_at < now() ? "due" : `in ${duration(record.expires_at - now())}`;
      replace(cells.cpu, bar(used.cpu_pct, used.cpu_pct == null ? null : `${used.cpu_pct.toFixed(0)}% of ${record.cpu}`));
      replace(cells.memory, bar(used.memory_pct, used.memory_bytes == null ? null : bytes(used.memory_bytes)));
      const disk = used.disk_used_bytes ?? record.disk_used_bytes;
      const diskPct = disk == null || !record.disk_bytes ? null : (100 * disk) / record.disk_bytes;
      replace(cells.disk, bar(diskPct, disk == null ? null : `${bytes(disk)} of ${bytes(record.disk_bytes)}`));
      cells.pool.textContent = record.from_pool ? "yes" : "";
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    });
    $("workspace-count").textContent = records.length ? String(records.length) : "";
    $("no-workspaces").hidden = records.length > 0;
  }

  function summary(event) {
    switch (event.type) {
      case "workspace.state":
        return `${event.workspace_id} ${event.state}${event.pooled ? " (warm pool)" : ""}${event.reason ? `: ${event.reason}` : ""}`;
      case "alert.raised":
      case "alert.cleared":
        return event.message;
      case "provider.health":
        return `${event.provider} ${event.healthy ? "healthy" : "unhealthy"}: ${event.detail}`;
      case "actor.crashed":
        return `${event.actor} ${event.restarted ? "restarted" : "stopped"}: ${event.reason}`;
      case "github.app":
        return `${event.action} ${event.app || "every App"}`;
      case "github.used":
        return `${event.app || "public"} for ${event.repo} in ${event.workspace_id}: ${event.outcome}`;
      default:
        return JSON.stringify(event);
    }
  }

  function addEvent(event) {
    const item = text("li", null, `event ${event.type.replace(".", "-")}`);
    item.append(text("time", clock(event.ts)), text("span", event.type, "type"), text("span", summary(event)));
    const list = $("events");
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function problem(message) {
    $("problem").hidden = !message;
    $("problem").textContent = message || "";
  }

  // ------------------------------------------------------------------ events

  function apply(event) {
    addEvent(event);
    if (event.seq <= state.snapshotSeq) return; // history: the snapshot has it already
    if (event.type === "workspace.state" && !event.pooled) {
      if (event.state === "destroyed") state.workspaces.delete(event.workspace_id);
      else state.workspaces.set(event.workspace_id, event.record);
      renderWorkspaces();
    } else if (event.type.startsWith("alert.") || event.type === "provider.health") {
      refresh();
    }
  }

  function parse(block) {
    const message = { id: null, data: "" };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") message.id = value;
      else if (field === "data") message.data += message.data ? `\n${value}` : value;
    }
    return message;
  }

  async function follow() {
    const controller = new AbortController();
    state.stream = controller;
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
    if (state.lastSeq !== null) headers["Last-Event-ID"] = String(state.lastSeq);
    try {
      const response = await fetch(`${API}/events?topics=${TOPICS}`, { headers, signal: controller.signal });
      if (response.status === 401) {
        signOut("the token was refused");
        return;
      }
      if (!response.ok) throw new Error(`the event stream answered HTTP ${response.status}`);
      live(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!message.data) continue;
          if (message.id) state.lastSeq = Number(message.id);
          apply(JSON.parse(message.data));
        }
      }
    } catch (_) {
      // the stream broke (or was aborted): reconnect below
    }
    live(false);
    if (state.stream === controller && !controller.signal.aborted) setTimeout(follow, RECONNECT_MS);
  }

  function live(on) {
    $("live").textContent = on ? "live" : "reconnecting";
    $("live").className = `badge ${on ? "ok" : "off"}`;
  }

  // ------------------------------------------------------------------ loading

  async function refresh() {
    try {
      const [providers, stats] = await Promise.all([call("GET", `${API}/providers`), call("GET", `${API}/stats`)]);
      state.stats = stats;
      renderProviders(providers);
      renderHost(stats);
      renderPool(stats.pool);
      renderAlerts(stats.alerts);
      renderWorkspaces();
      problem("");
    } catch (error) {
      if (error.status !== 401) problem(error.message);
    }
  }

  async function open() {
    const health = await fetch("/healthz").then((response) => response.json());
    $("version").textContent = `v${health.version}`;
    // The snapshot's seq is where the event stream resumes: no event is missed or applied twice.
    const snapshot = await call("GET", `${API}/snapshot`);
    state.workspaces = new Map(snapshot.workspaces.map((record) => [record.id, record]));
    replace($("events"));
    state.snapshotSeq = snapshot.seq;
    state.lastSeq = Math.max(0, snapshot.seq - HISTORY);
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    renderWorkspaces();
    await refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
    follow();
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    if (state.stream) state.stream.abort();
    state.stream = null;
    clearInterval(state.timer);
    state.workspaces.clear();
    renderWorkspaces();
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = reason || "";
    $("live").textContent = "offline";
    $("live").className = "badge off";
  }

  async function signIn(token) {
    state.token = token;
    try {
      await open();
      sessionStorage.setItem(TOKEN_KEY, token);
      $("sign-in-error").textContent = "";
    } catch (error) {
      if (error.status !== 401) $("sign-in-error").textContent = error.message;
    }
  }

  // ------------------------------------------------------------------ actions

  async function act(button) {
    const id = button.dataset.id;
    if (button.classList.contains("destroy")) {
      if (!button.classList.contains("armed")) {
        // Two clicks to destroy: the first arms the button for a few seconds.
        button.classList.add("armed");
        button.textContent = "Confirm";
        setTimeout(() => {
          button.classList.remove("armed");
          button.textContent = "Destroy";
        }, 4000);
        return;
      }
      button.disabled = true;
      button.textContent = "Destroying";
      try {
        await call("DELETE", `${API}/${encodeURIComponent(id)}`);
      } catch (error) {
        problem(`destroy ${id}: ${error.message}`);
        button.disabled = false;
        button.textContent = "Destroy";
      }
    } else if (button.classList.contains("extend")) {
      const { ttl } = state.rows.get(id);
      try {
        const record = await call("POST", `${API}/${encodeURIComponent(id)}/extend`, {
          ttl_seconds: Number(ttl.value),
        });
        state.workspaces.set(record.id, record);
        renderWorkspaces();
      } catch (error) {
        problem(`extend ${id}: ${error.message}`);
      }
    }
  }

  $("workspaces").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) act(button);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value.trim());
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  if (state.token) signIn(state.token);
})();

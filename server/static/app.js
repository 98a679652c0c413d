// The live page: one WebSocket per tab, every change rendered from what the server pushes.
"use strict";
const $ = (id) => document.getElementById(id);
const DEMO_USERS = ["alice", "bob", "carol", "dave", "erin"];
const state = { socket: null, me: null, cid: null, members: new Map(), watchers: new Set(), nextId: 1, pending: new Map() };

function log(kind, text) {
  const li = document.createElement("li");
  const time = new Date().toLocaleTimeString();
  li.innerHTML = `<span class="t">${time}</span> <span class="k"></span> <span class="v"></span>`;
  li.querySelector(".k").textContent = kind;
  li.querySelector(".v").textContent = text;
  $("log").prepend(li);
  while ($("log").children.length > 200) $("log").lastChild.remove();
}

function ago(iso) {
  if (!iso) return "never seen";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

function render() {
  const ul = $("members");
  const ids = [...state.members.keys()].sort();
  ul.replaceChildren(...ids.map((id) => {
    const u = state.members.get(id);
    const li = document.createElement("li");
    li.id = `member-${id}`;
    li.dataset.online = String(!!u.online);
    li.innerHTML = `<span class="dot"></span><span class="name"><b></b><span class="status"></span></span><span class="seen"></span>`;
    li.querySelector(".dot").classList.toggle("online", !!u.online);
    li.querySelector("b").textContent = u.name || id;
    if (id === state.me) li.querySelector(".name b").insertAdjacentHTML("afterend", '<span class="you">you</span>');
    if (state.watchers.has(id)) li.querySelector(".name b").insertAdjacentHTML("afterend", '<span class="watching">watching</span>');
    li.querySelector(".status").textContent = u.status || "";
    li.querySelector(".seen").textContent = u.online ? "online" : ago(u.last_active);
    return li;
  }));
  $("watchers").textContent = `${state.watchers.size} watching`;
}

function request(type, fields) {
  const id = state.nextId++;
  state.socket.send(JSON.stringify({ type, id, ...fields }));
  return new Promise((resolve, reject) => state.pending.set(id, { resolve, reject }));
}

function onEvent(e) {
  const user = e.user || (e.member && e.member.user);
  const who = user ? user.id : e.user_id;
  log(e.type, `${who}${user && "online" in user ? (user.online ? " online" : " offline") : ""}${user && user.status ? ` "${user.status}"` : ""}`);
  if (e.cid && e.cid !== state.cid) return;
  switch (e.type) {
    case "user.presence.changed":
    case "user.updated":
      if (state.members.has(user.id)) state.members.set(user.id, user);
      if (user.id === state.me) showMe(user);
      break;
    case "user.watching.start": state.watchers.add(user.id); break;
    case "user.watching.stop": state.watchers.delete(user.id); break;
    case "member.added": state.members.set(user.id, user); break;
    case "member.removed": state.members.delete(user.id); break;
  }
  render();
}

function showMe(user) {
  $("invisible").checked = !!user.invisible;
  if (document.activeElement !== $("status")) $("status").value = user.status || "";
}

async function connect(userId, cid) {
  $("login-error").textContent = "";
  const answer = await fetch(`/dev/token?user_id=${encodeURIComponent(userId)}`);
  const body = await answer.json();
  if (!answer.ok) { $("login-error").textContent = body.message; return; }
  if (state.socket) state.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/connect?token=${encodeURIComponent(body.token)}`);
  state.socket = socket;
  socket.onmessage = async (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "connection.ok") {
      state.me = frame.me.id;
      $("me-id").textContent = state.me;
      $("conn").textContent = `connected as ${state.me}`;
      $("conn").className = "pill on";
      $("login").hidden = true; $("me").hidden = false;
      showMe(frame.me);
      log("connection.ok", `connection ${frame.connection_id}`);
      try { showChannel(cid, await request("watch", { cid, presence: true })); }
      catch (error) { log("error", error.message); }
    } else if (frame.type === "result" || frame.type === "error") {
      const waiter = state.pending.get(frame.id);
      state.pending.delete(frame.id);
      if (frame.type === "error") log("error", `${frame.code}: ${frame.message}`);
      if (waiter) frame.type === "result" ? waiter.resolve(frame.result) : waiter.reject(new Error(frame.message));
    } else {
      onEvent(frame);
    }
  };
  socket.onclose = (e) => {
    if (state.socket !== socket) return;
    $("conn").textContent = `closed ${e.code} ${e.reason}`;
    $("conn").className = "pill off";
    log("closed", `${e.code} ${e.reason}`);
  };
}

function showChannel(cid, channelState) {
  state.cid = cid;
  state.members = new Map(channelState.members.map((m) => [m.user_id, m.user]));
  state.watchers = new Set(channelState.watchers.map((u) => u.id));
  $("channel-name").textContent = channelState.channel.name || cid;
  $("channel-card").hidden = false;
  render();
}

DEMO_USERS.forEach((id) => {
  const b = document.createElement("button");
  b.textContent = id; b.id = `login-${id}`;
  b.onclick = () => connect(id, $("channel").value);
  $("users").append(b);
});
$("custom-user").onsubmit = (e) => { e.preventDefault(); if ($("user-id").value) connect($("user-id").value.trim(), $("channel").value); };
$("status-form").onsubmit = (e) => { e.preventDefault(); request("set_status", { status: $("status").value || null }).then(showMe, () => {}); };
$("invisible").onchange = () => request("set_invisible", { invisible: $("invisible").checked }).then(showMe, () => {});
setInterval(() => { if (state.cid) render(); }, 1000);

// `/?user=alice&channel=demo:lobby` connects straight away.
const params = new URLSearchParams(location.search);
if (params.get("channel")) $("channel").value = params.get("channel");
if (params.get("user")) connect(params.get("user"), $("channel").value);

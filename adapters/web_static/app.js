// The web chat. Every piece of text goes into the page with textContent, never as HTML.
"use strict";

const log = document.getElementById("log");
const typing = document.getElementById("typing");
const form = document.getElementById("composer");
const input = document.getElementById("text");
const send = document.getElementById("send");

function add(role, text, attachment) {
  const item = document.createElement("li");
  item.className = "msg " + role;
  item.textContent = text;
  if (attachment) {
    const blob = new Blob([attachment.content], { type: attachment.mime_type });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = attachment.filename;
    link.textContent = "Download " + attachment.filename;
    item.append(document.createElement("br"), link);
  }
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

async function loadHistory() {
  const response = await fetch("/chat/api/history", { credentials: "same-origin" });
  if (!response.ok) { add("error", "Could not load the conversation (" + response.status + ")."); return; }
  const data = await response.json();
  for (const turn of data.turns) add(turn.role, turn.text);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  add("user", text);
  typing.hidden = false;
  send.disabled = true;
  try {
    const response = await fetch("/chat/api/message", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text }),
    });
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) add("error", (data && data.error) || "Something went wrong (" + response.status + ").");
    else if (data && data.reply !== null) add("bot", data.reply, data.attachment);
  } catch (error) {
    add("error", "The bot is not reachable right now. Please try again.");
  } finally {
    typing.hidden = true;
    send.disabled = false;
    input.focus();
  }
});

loadHistory();

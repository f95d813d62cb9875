// The Q&A page: streams an answer from /api/v1/ask and lets the reader open every source.
// Knowledge-base text is data: it is only ever written with textContent, never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let currentResult = null;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function safeHref(url) {
    return typeof url === "string" && /^https?:\/\//.test(url) ? url : "#";
  }

  function entityHref(title) {
    return "/entity/" + encodeURIComponent(title);
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // --- reading the SSE stream -----------------------------------------------------------

  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data) onEvent(JSON.parse(data)); // blocks of ":" comments are keep-alives
      }
    }
  }

  async function ask(question) {
    resetAnswer();
    $("answer-section").hidden = false;
    $("answer").setAttribute("aria-busy", "true");
    $("answer").classList.add("draft");
    $("ask-button").disabled = true;
    setStatus("Searching the knowledge base…");
    try {
      const response = await fetch("/api/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ question: question, stream: true }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const message = (body.error && body.error.message) || response.statusText;
        throw new Error(message + " (" + response.status + ")");
      }
      setStatus("Writing the answer…");
      await readEvents(response, (event) => {
        if (event.type === "token") $("answer").textContent += event.text;
        else if (event.type === "result") showResult(event.result);
        else if (event.type === "error") throw new Error(event.error.message);
      });
    } catch (err) {
      $("answer").classList.remove("draft");
      setStatus("Error: " + err.message);
    } finally {
      $("answer").setAttribute("aria-busy", "false");
      $("ask-button").disabled = false;
    }
  }

  // --- rendering a result -----------------------------------------------------------------

  function resetAnswer() {
    currentResult = null;
    for (const id of ["answer", "sources", "facts", "entities", "abstain-reason"]) $(id).textContent = "";
    $("abstention").hidden = true;
    $("dropped").hidden = true;
    $("facts-section").hidden = true;
    closeSource();
  }

  function citationButton(citation) {
    const button = el("button", "[" + citation.id + "]", "cite");
    button.type = "button";
    button.dataset.citation = citation.id;
    button.dataset.kind = citation.kind;
    button.setAttribute("aria-label", "Open source " + citation.id + ": " + citation.title);
    button.addEventListener("click", () => openCitation(citation));
    return button;
  }

  function renderAnswer(result) {
    const byId = new Map(result.citations.map((c) => [c.id, c]));
    const answer = $("answer");
    answer.textContent = "";
    answer.classList.remove("draft");
    const parts = result.answer.split(/\[(F?\d+)\]/);
    parts.forEach((part, i) => {
      if (i % 2 === 0) answer.appendChild(document.createTextNode(part));
      else if (byId.has(part)) answer.appendChild(citationButton(byId.get(part)));
      else answer.appendChild(document.createTextNode("[" + part + "]"));
    });
  }

  function renderSources(citations) {
    const list = $("sources");
    for (const citation of citations) {
      const item = el("li");
      item.appendChild(citationButton(citation));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("strong", citation.title + (citation.section ? " › " + citation.section : "")));
      item.appendChild(el("span", " — " + citation.snippet, "snippet"));
      list.appendChild(item);
    }
    if (!citations.length) list.appendChild(el("li", "No sources were found."));
  }

  function renderFacts(result) {
    const list = $("facts");
    for (const fact of result.facts) {
      const item = el("li");
      const subject = el("a", fact.subject);
      subject.href = entityHref(fact.subject);
      item.appendChild(subject);
      item.appendChild(el("span", " · " + fact.predicate + " · ", "predicate"));
      if (fact.object_is_entity) {
        const object = el("a", fact.object);
        object.href = entityHref(fact.object);
        item.appendChild(object);
      } else item.appendChild(el("span", fact.object));
      const source = el("a", "infobox “" + fact.field + "”, revision " + fact.rev_id, "provenance");
      source.href = "https://en.wikipedia.org/w/index.php?oldid=" + encodeURIComponent(fact.rev_id);
      source.rel = "noopener noreferrer";
      source.target = "_blank";
      item.appendChild(el("br"));
      item.appendChild(source);
      list.appendChild(item);
    }
    const entities = $("entities");
    result.entities.forEach((entity, i) => {
      if (i) entities.appendChild(document.createTextNode(", "));
      const link = el("a", entity.title);
      link.href = entityHref(entity.title);
      entities.appendChild(link);
    });
    if (!result.entities.length) entities.textContent = "none";
    $("facts-section").hidden = !(result.facts.length || result.entities.length);
  }

  function showResult(result) {
    currentResult = result;
    if (result.abstained) {
      $("answer").textContent = "";
      $("answer").classList.remove("draft");
      $("abstention").hidden = false;
      $("abstain-reason").textContent = result.abstain_reason || "";
      $("sources-heading").textContent = "Closest sources";
    } else {
      $("sources-heading").textContent = "Sources";
      renderAnswer(result);
    }
    if (result.dropped_sentences && result.dropped_sentences.length) {
      $("dropped").hidden = false;
      $("dropped").textContent = result.dropped_sentences.length + " unsupported sentence(s) were left out.";
    }
    renderSources(result.citations);
    renderFacts(result);
    setStatus(result.abstained ? "The knowledge base does not answer this question." : "Answered with citations.");
  }

  // --- the source panel -------------------------------------------------------------------

  function showSource(title, section, text, provenance, url) {
    $("source-title").textContent = title;
    $("source-section").textContent = section ? "Section: " + section : "";
    $("source-text").textContent = text;
    $("source-provenance").textContent = provenance || "";
    $("source-link").href = safeHref(url);
    const panel = $("source-panel");
    panel.hidden = false;
    panel.focus();
  }

  function closeSource() {
    $("source-panel").hidden = true;
  }

  async function openPassage(passageId) {
    const response = await fetch("/api/v1/passages/" + encodeURIComponent(passageId));
    const body = await response.json();
    if (!response.ok) return setStatus("Error: " + body.error.message);
    showSource(body.title, body.section, body.text, "Passage " + body.passage_id + ", revision " + body.rev_id, body.url);
  }

  function openCitation(citation) {
    if (citation.kind === "passage" && citation.passage_id) return openPassage(citation.passage_id);
    const fact = currentResult && currentResult.facts.find((f) => f.triple_id === citation.triple_id);
    const text = fact ? fact.subject + " · " + fact.predicate + " · " + fact.object : citation.snippet;
    const provenance = fact ? "Infobox field “" + fact.field + "”, revision " + fact.rev_id : "";
    showSource(citation.title, "", text, provenance, citation.url);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const question = $("question").value.trim();
      if (question) ask(question);
    });
    $("source-close").addEventListener("click", closeSource);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("source-panel").hidden) closeSource();
    });
    // A link such as /?passage=<id> opens that source directly.
    const passageId = new URLSearchParams(window.location.search).get("passage");
    if (passageId) openPassage(passageId);
  });
})();

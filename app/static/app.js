// The Q&A page: streams an answer from /api/v1/ask, one verified sentence at a time, and lets the
// reader open every source with the cited sentence highlighted.
// Knowledge-base text is data: it is only ever written with textContent, never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let currentResult = null;
  let streamedText = ""; // the verified sentences shown so far, as the answer's text
  let answering = null; // the AbortController of the answer being streamed: Stop closes its connection

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
    $("ask-button").disabled = true;
    $("stop-button").hidden = false;
    answering = new AbortController();
    setStatus("Searching the knowledge base…");
    try {
      const response = await fetch("/api/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ question: question, stream: true }),
        signal: answering.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const message = (body.error && body.error.message) || response.statusText;
        throw new Error(message + " (" + response.status + ")");
      }
      setStatus("Writing the answer and checking each sentence against its source…");
      await readEvents(response, (event) => {
        if (event.type === "sentence") appendSentence(event);
        else if (event.type === "result" && event.error) throw new Error(event.error.message);
        else if (event.type === "result") showResult(event.result);
      });
    } catch (err) {
      // Stop closed the connection: the server stops writing the answer and frees its place.
      if (err.name === "AbortError") setStatus("Stopped. The sentences shown so far were checked.");
      else setStatus("Error: " + err.message);
    } finally {
      $("answer").setAttribute("aria-busy", "false");
      $("ask-button").disabled = false;
      $("stop-button").hidden = true;
      answering = null;
    }
  }

  // --- rendering a result -----------------------------------------------------------------

  function resetAnswer() {
    currentResult = null;
    streamedText = "";
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

  // Text with its [n] markers as buttons opening the citation of that id.
  function appendMarked(parent, text, byId) {
    text.split(/\[(F?\d+)\]/).forEach((part, i) => {
      if (i % 2 === 0) parent.appendChild(document.createTextNode(part));
      else if (byId.has(part)) parent.appendChild(citationButton(byId.get(part)));
      else parent.appendChild(document.createTextNode("[" + part + "]"));
    });
  }

  // A sentence the server has verified: shown at once, its markers opening the evidence sentence behind it.
  function appendSentence(event) {
    const byId = new Map(event.citations.map((c) => [c.id, c]));
    const sentence = el("span", null, "sentence");
    const text = (streamedText ? " " : "") + event.text;
    appendMarked(sentence, text, byId);
    $("answer").appendChild(sentence);
    streamedText += text;
    setStatus("Checking the next sentence…");
  }

  function renderAnswer(result) {
    const answer = $("answer");
    answer.textContent = "";
    appendMarked(answer, result.answer, new Map(result.citations.map((c) => [c.id, c])));
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
      $("answer").textContent = result.answer;
      $("abstention").hidden = false;
      $("abstain-reason").textContent = result.abstain_reason || "";
      $("sources-heading").textContent = "Closest sources";
    } else {
      $("sources-heading").textContent = "Sources";
      // The streamed sentences already are the answer, each marker opening its own evidence sentence.
      if (streamedText !== result.answer) renderAnswer(result);
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

  // Where the cited sentence stands in the text: its offsets when they still hold, else where its text is found.
  function citedRange(text, citation) {
    if (!citation || !citation.sentence) return null;
    const start = citation.sentence_start;
    const end = citation.sentence_end;
    if (Number.isInteger(start) && Number.isInteger(end) && text.slice(start, end) === citation.sentence) {
      return [start, end];
    }
    const found = text.indexOf(citation.sentence);
    return found >= 0 ? [found, found + citation.sentence.length] : null;
  }

  function showSource(title, section, text, provenance, url, range) {
    $("source-title").textContent = title;
    $("source-section").textContent = section ? "Section: " + section : "";
    const body = $("source-text");
    body.textContent = "";
    let mark = null;
    if (range) {
      mark = el("mark", text.slice(range[0], range[1]), "cited");
      mark.title = "The sentence that backs the answer";
      body.appendChild(document.createTextNode(text.slice(0, range[0])));
      body.appendChild(mark);
      body.appendChild(document.createTextNode(text.slice(range[1])));
    } else body.textContent = text;
    const notes = [provenance, mark ? "highlighted: the sentence that backs the answer" : ""];
    $("source-provenance").textContent = notes.filter(Boolean).join(" · ");
    $("source-link").href = safeHref(url);
    const panel = $("source-panel");
    panel.hidden = false;
    panel.focus();
    if (mark) mark.scrollIntoView({ block: "nearest" });
  }

  function closeSource() {
    $("source-panel").hidden = true;
  }

  async function openPassage(passageId, citation) {
    const response = await fetch("/api/v1/passages/" + encodeURIComponent(passageId));
    const body = await response.json();
    if (!response.ok) return setStatus("Error: " + body.error.message);
    const provenance = "Passage " + body.passage_id + ", revision " + body.rev_id;
    showSource(body.title, body.section, body.text, provenance, body.url, citedRange(body.text, citation));
  }

  function openCitation(citation) {
    if (citation.kind === "passage" && citation.passage_id) return openPassage(citation.passage_id, citation);
    const fact = currentResult && currentResult.facts.find((f) => f.triple_id === citation.triple_id);
    const text = fact ? fact.subject + " · " + fact.predicate + " · " + fact.object : citation.snippet;
    const provenance = fact ? "Infobox field “" + fact.field + "”, revision " + fact.rev_id : "";
    // A fact is one statement: when it backs the answer, all of it is highlighted.
    showSource(citation.title, "", text, provenance, citation.url, citation.sentence ? [0, text.length] : null);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const question = $("question").value.trim();
      if (question) ask(question);
    });
    $("source-close").addEventListener("click", closeSource);
    $("stop-button").addEventListener("click", () => answering && answering.abort());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("source-panel").hidden) closeSource();
    });
    // A link such as /?passage=<id> opens that source directly.
    const passageId = new URLSearchParams(window.location.search).get("passage");
    if (passageId) openPassage(passageId);
  });
})();

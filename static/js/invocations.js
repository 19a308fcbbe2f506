// Live tail: ask for the invocations finished since the last cursor every 2 s and append their logs.
(function () {
  "use strict";
  var pre = document.getElementById("tail");
  if (!pre) return;
  var button = document.getElementById("tail-pause");
  var state = document.getElementById("tail-state");
  var url = pre.dataset.url;
  var cursor = null;
  var paused = false;
  var busy = false;
  // Keep the page light: the oldest lines go once the tail holds this many characters.
  var MAX_CHARS = 500000;

  function append(invocation) {
    var header = document.createElement("a");
    header.href = invocation.url;
    header.className = "tail-invocation " + invocation.status.toLowerCase();
    header.textContent = "── " + invocation.finished_at + " " + invocation.id + " " + invocation.status + "\n";
    pre.appendChild(header);
    pre.appendChild(document.createTextNode(invocation.log));
    while (pre.textContent.length > MAX_CHARS && pre.firstChild) pre.removeChild(pre.firstChild);
  }

  function poll() {
    if (paused || busy) return;
    busy = true;
    var query = cursor === null ? "" : "?after=" + encodeURIComponent(cursor);
    fetch(url + query, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        data.invocations.forEach(append);
        cursor = data.cursor;
        if (atBottom) pre.scrollTop = pre.scrollHeight;
        state.textContent = "live";
      })
      .catch(function (error) { state.textContent = "retrying (" + error.message + ")"; })
      .then(function () { busy = false; });
  }

  button.addEventListener("click", function () {
    paused = !paused;
    button.textContent = paused ? "Resume" : "Pause";
    state.textContent = paused ? "paused" : "live";
    if (!paused) poll();
  });
  poll();
  setInterval(poll, 2000);
})();

// The bucket page's uploads: each chosen file is PUT, as its raw bytes, to its object's URL, with a progress
// bar of its own (XMLHttpRequest's upload progress events); several go at once.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var files = document.getElementById("upload-files");
  var prefix = document.getElementById("upload-prefix");
  var list = document.getElementById("uploads");
  var done = document.getElementById("uploads-done");
  var csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;
  var maxBytes = Number(form.dataset.maxBytes);
  var pending = 0;

  // Each folder and the name percent-encoded; the slashes between them stay folders.
  function objectUrl(key) {
    return form.dataset.objectsUrl + key.split("/").map(encodeURIComponent).join("/");
  }

  function row(key) {
    var item = document.createElement("li");
    item.className = "upload";
    var name = document.createElement("span");
    name.className = "mono key";
    name.textContent = key;
    var bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    var percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = "0%";
    var status = document.createElement("span");
    status.className = "upload-status";
    item.append(name, bar, percent, status);
    list.append(item);
    return {item: item, bar: bar, percent: percent, status: status};
  }

  function finish(view, ok, text) {
    view.item.classList.add(ok ? "ok" : "failed");
    view.status.textContent = text;
    pending -= 1;
    if (pending === 0) done.hidden = false;
  }

  function upload(file) {
    var key = prefix.value + file.name;
    var view = row(key);
    pending += 1;
    if (file.size > maxBytes) {
      finish(view, false, "too large: the largest object is " + maxBytes + " bytes");
      return;
    }
    var request = new XMLHttpRequest();
    request.open("PUT", objectUrl(key));
    request.setRequestHeader("X-CSRFToken", csrfToken);
    if (file.type) request.setRequestHeader("Content-Type", file.type);
    request.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      view.bar.max = event.total;
      view.bar.value = event.loaded;
      view.percent.textContent = Math.floor(100 * event.loaded / event.total) + "%";
    });
    request.addEventListener("load", function () {
      var answer = {};
      try { answer = JSON.parse(request.responseText); } catch (e) { /* not JSON: the status says enough */ }
      if (request.status === 200) {
        view.bar.max = 1;
        view.bar.value = 1;
        view.percent.textContent = "100%";
        finish(view, true, "uploaded · " + answer.Size + " bytes · ETag " + answer.ETag);
      } else {
        finish(view, false, "refused (" + request.status + "): " + (answer.message || request.statusText));
      }
    });
    request.addEventListener("error", function () { finish(view, false, "the connection failed"); });
    request.send(file);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    done.hidden = true;
    Array.prototype.forEach.call(files.files, upload);
    files.value = "";
  });
})();

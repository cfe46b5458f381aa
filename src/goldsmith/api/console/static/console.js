// Goldsmith console: progressive enhancement only — every page works without this file.
// * Pages with pending work (body[data-live]) poll their JSON twin every 2 s and update
//   [data-live-id][data-live-field] elements in place; when nothing is pending any more,
//   the page reloads once so its actions match the new state.
// * Selects with [data-autosubmit] submit their form when picked with the pointer (the
//   region selector); keyboard users press its Switch button.
// * Forms with [data-confirm] ask before submitting (deregister, delete).
// * File inputs with [data-fill] read a text file into a text area (public key import).
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  // States that change by themselves (instances, volumes, snapshots, images).
  var TRANSITIONAL = /^(pending|stopping|shutting-down|creating|deleting|attaching|detaching)$/;

  function collect(value, found) {
    // Every object in the JSON that has an id and a State: images, instances, snapshots…
    if (Array.isArray(value)) {
      value.forEach(function (item) { collect(item, found); });
    } else if (value && typeof value === "object") {
      var id = value.ImageId || value.InstanceId || value.SnapshotId || value.VolumeId;
      var state = value.State && typeof value.State === "object" ? value.State.Name : value.State;
      // The first object with an id wins: an instance's volume attachments (which carry
      // its InstanceId and their own State) come after the instance itself.
      if (id && typeof state === "string" && !(id in found)) {
        found[id] = Object.assign({}, value, { State: state });
      }
      Object.keys(value).forEach(function (key) { collect(value[key], found); });
    }
    return found;
  }

  function poll(url) {
    var twin = url + (url.indexOf("?") < 0 ? "?" : "&") + "format=json";
    fetch(twin, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var items = collect(data, {});
        var pending = false;
        document.querySelectorAll("[data-live-id]").forEach(function (el) {
          var item = items[el.getAttribute("data-live-id")];
          var field = el.getAttribute("data-live-field");
          if (!item || !(field in item)) { return; }
          var text = String(item[field]);
          if (el.textContent !== text) {
            el.textContent = text;
            el.className = el.className.replace(/state-\S+/, "state-" + text);
          }
          if (TRANSITIONAL.test(text)) { pending = true; }
        });
        if (pending) {
          window.setTimeout(function () { poll(url); }, 2000);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(function () { poll(url); }, 5000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.body.getAttribute("data-live");
    if (live) { window.setTimeout(function () { poll(live); }, 2000); }
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      // Only a choice made with the pointer submits at once: arrowing through the options
      // with the keyboard must not switch on every step (the Switch button is there).
      var pointer = false;
      select.addEventListener("pointerdown", function () { pointer = true; });
      select.addEventListener("keydown", function () { pointer = false; });
      select.addEventListener("change", function () { if (pointer) { select.form.submit(); } });
    });
    document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-fill"));
        if (input.files.length && target) {
          input.files[0].text().then(function (text) { target.value = text.trim(); });
        }
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();

/*
 * live.js: parts of a console page that refresh themselves, with no library and no inline script.
 *
 * Contract (kept stable; other pages rely on it):
 *   <div data-live-src="/console/some/fragment" data-live-every="5">...</div>
 * Every `data-live-every` seconds (at least 1; 5 when missing or not a number) the element's
 * contents are replaced by the HTML the same-origin URL `data-live-src` answers. The server
 * renders that fragment with the same template code as the full page, escaped as usual.
 *
 * - Never stacks requests: the next fetch is scheduled only when the previous one has ended
 *   (a hung one is aborted after 30 seconds).
 * - Pauses while the tab is hidden, and fetches at once when it is shown again.
 * - Leaves the contents alone while the keyboard focus is inside the element (a person tabbing
 *   through it keeps their place), and when the answer is unchanged.
 * - On an error answer (4xx/5xx, or a redirect such as to sign-in, which is not followed) the
 *   contents stay as they were and the element gets `data-live-error="<status>"`; polling goes
 *   on, and the attribute is removed at the next good answer.
 * - Sets `data-live-at` (the time of the last good answer, ISO) so a test or a style can see it.
 * - Keeps no growing state: per element, one timer, one flag and the last answer's text.
 *   Elements are found once, when the page loads; one removed from the page stops polling.
 *   Cross-origin URLs are ignored.
 */
(function () {
  "use strict";

  var DEFAULT_SECONDS = 5;
  var MIN_SECONDS = 1;
  var TIMEOUT_MS = 30000;

  function watch(element) {
    var url;
    try {
      url = new URL(element.getAttribute("data-live-src") || "", window.location.href);
    } catch (error) {
      return null;
    }
    if (url.origin !== window.location.origin) {
      return null;
    }
    var seconds = parseFloat(element.getAttribute("data-live-every"));
    if (!isFinite(seconds)) {
      seconds = DEFAULT_SECONDS;
    }
    var every = Math.max(MIN_SECONDS, seconds) * 1000;
    var timer = null;
    var busy = false;
    var last = null;

    function schedule(delay) {
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
      if (!document.hidden && element.isConnected) {
        timer = setTimeout(poll, delay);
      }
    }

    function poll() {
      timer = null;
      if (busy || document.hidden || !element.isConnected) {
        return;
      }
      busy = true;
      var controller = new AbortController();
      var deadline = setTimeout(function () {
        controller.abort();
      }, TIMEOUT_MS);
      fetch(url.href, {
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
        headers: { Accept: "text/html" },
        signal: controller.signal
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error(response.type === "opaqueredirect" ? "redirect" : String(response.status));
          }
          return response.text();
        })
        .then(function (html) {
          element.removeAttribute("data-live-error");
          element.setAttribute("data-live-at", new Date().toISOString());
          if (html !== last && !element.contains(document.activeElement)) {
            element.innerHTML = html;
            last = html;
          }
        })
        .catch(function (error) {
          element.setAttribute("data-live-error", error && error.message ? error.message : "error");
        })
        .then(function () {
          clearTimeout(deadline);
          busy = false;
          schedule(every);
        });
    }

    return {
      start: function () {
        schedule(every);
      },
      shown: function () {
        if (!busy) {
          schedule(0);
        }
      }
    };
  }

  function init() {
    var watchers = [];
    var found = document.querySelectorAll("[data-live-src]");
    for (var i = 0; i < found.length; i += 1) {
      var watcher = watch(found[i]);
      if (watcher !== null) {
        watchers.push(watcher);
        watcher.start();
      }
    }
    if (watchers.length > 0) {
      document.addEventListener("visibilitychange", function () {
        if (!document.hidden) {
          for (var j = 0; j < watchers.length; j += 1) {
            watchers[j].shown();
          }
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

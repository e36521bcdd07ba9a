/*
 * RHEL book: glue between the ipywidgets html-manager (embed-amd.js) and this offline site.
 * Loaded after require.js and before embed-amd.js (see nb_ipywidgets_js in _config.yml).
 *
 * 1. Font Awesome files of the widgets. The bundle computes webpack's public path from the
 *    RequireJS address of its "@jupyter-widgets/html-manager/dist/..." module, which by default
 *    is the page's own folder. Mapping that module prefix to ./fonts/ next to this script makes
 *    the browser fetch the vendored .woff2 files from _static/widgets/fonts/.
 * 2. MathJax. The widgets typeset their descriptions with the MathJax 2 call
 *    MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book runs MathJax 3, which has
 *    no Hub. A small Hub.Queue is provided that forwards to MathJax 3's typesetPromise.
 */
(function () {
  "use strict";

  var src = document.currentScript ? document.currentScript.src : "";
  var here = src.slice(0, src.lastIndexOf("/") + 1);
  if (window.require && typeof window.require.config === "function" && here) {
    window.require.config({
      paths: { "@jupyter-widgets/html-manager/dist": here + "fonts" },
    });
  }

  var waiting = [];

  function typeset(elements) {
    var mj = window.MathJax;
    if (mj && typeof mj.typesetPromise === "function") {
      var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
      ready
        .then(function () {
          return mj.typesetPromise(elements);
        })
        .catch(function (err) {
          console.warn("MathJax could not typeset a widget label:", err);
        });
    } else {
      Array.prototype.push.apply(waiting, elements);
    }
  }

  var hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          typeset([job[2]]);
        }
      }
    },
  };

  function install(mj) {
    if (mj && !mj.Hub) {
      mj.Hub = hub;
    }
  }

  var mathjaxOnPage = Array.prototype.some.call(document.scripts, function (s) {
    return /\/mathjax\//i.test(s.src || "");
  });
  if (window.MathJax === undefined && !mathjaxOnPage) {
    return; // no MathJax here: the widgets skip typesetting by themselves
  }

  // Before MathJax 3 loads, window.MathJax is its configuration object; when it loads it
  // replaces the global, so the Hub is installed again once MathJax is ready.
  var config = (window.MathJax = window.MathJax || {});
  if (config.version) {
    install(config); // MathJax already loaded
    return;
  }
  install(config);
  config.startup = config.startup || {};
  var previousReady = config.startup.ready;
  config.startup.ready = function () {
    if (typeof previousReady === "function") {
      previousReady();
    } else {
      window.MathJax.startup.defaultReady();
    }
    install(window.MathJax);
    if (waiting.length) {
      typeset(waiting.splice(0));
    }
  };
})();

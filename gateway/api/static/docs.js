// Starts Redoc on /docs. Kept out of the page so the page's Content-Security-Policy can forbid
// inline scripts.
"use strict";
Redoc.init(
  "/openapi.json",
  {
    expandResponses: "200,201",
    requiredPropsFirst: true,
    hideHostname: true,
  },
  document.getElementById("redoc"),
);

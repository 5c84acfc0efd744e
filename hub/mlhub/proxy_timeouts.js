// Loaded into the embedded mode's configurable-http-proxy (`node --require` this file; mlhub's
// jupyterhub_config.py does it), which has no flag for Node's own read timeouts: every HTTP
// server the process makes answers a client that is too slow with its headers
// (MLHUB_PROXY_HEADERS_TIMEOUT_MS) or with its whole request (MLHUB_PROXY_REQUEST_TIMEOUT_MS)
// with 408 and closes it, checked every MLHUB_PROXY_TIMEOUT_CHECK_MS, so a few slow clients
// cannot hold the proxy's connections while everyone else waits.
"use strict";
const http = require("http");

const setting = (name) => {
  const value = Number(process.env[name]);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a number of milliseconds, got ${process.env[name]}`);
  }
  return value;
};
const timeouts = {
  headersTimeout: setting("MLHUB_PROXY_HEADERS_TIMEOUT_MS"),
  requestTimeout: setting("MLHUB_PROXY_REQUEST_TIMEOUT_MS"),
  connectionsCheckingInterval: setting("MLHUB_PROXY_TIMEOUT_CHECK_MS"),
};
const createServer = http.createServer;
http.createServer = function (options, listener) {
  if (typeof options === "function" || options === undefined) {
    return createServer.call(this, { ...timeouts }, options);
  }
  return createServer.call(this, { ...timeouts, ...options }, listener);
};

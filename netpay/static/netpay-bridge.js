/*
 * netpay-bridge.js: a newspaper page pays one article through the reader's
 * NetPay wallet bridge (`netpay wallet bridge`, on 127.0.0.1).
 *
 *   <script src="/static/netpay-bridge.js"></script>
 *   const resp = await NetPay.pay("/articles/7", {bridge: "http://127.0.0.1:8790"});
 *   if (resp.ok) {
 *     article.innerHTML = await resp.text();
 *     credit.textContent = resp.headers.get("NetPay-Balance");  // words left
 *   }
 *
 * NetPay.pay asks the bridge for the Authorization header that pays the URL
 * (POST /v1/authorize), then fetches the article itself with that header, so
 * the vendor's answer (the article, NetPay-Receipt, NetPay-Balance) comes to
 * the page. The article must be on the page's own origin: the bridge refuses
 * anything else, and only answers origins the reader approved with
 * `netpay wallet approve-origin`.
 *
 * NetPay.openWindow(siteUrl, units, {bridge}) prepays `units` words at once
 * (a cookie-cache window): the bridge gives the header (POST /v1/window),
 * the page POSTs it to the site's /netpay/window, and the browser keeps the
 * window's HttpOnly cookie; later same-origin fetches of articles pay from it
 * without the bridge. It resolves to the vendor's window JSON
 * ({vendor_id, ecoin_id, epoch, window_from, window_top, units, words_left,
 * unit_value, currency, expires_at_ms}) with `netpay` set to the bridge's
 * answer.
 *
 * Errors reject with a NetPay.NetPayError whose `code` is the bridge's or the
 * vendor's error code ("permission_denied", "limit_exceeded", ...), or
 * "bridge_unreachable" when the bridge is not running or does not answer this
 * site (a browser hides a refused CORS answer from the page). Plain ES2017,
 * no dependencies, no build step.
 */
(function (global) {
  "use strict";

  var DEFAULT_BRIDGE = "http://127.0.0.1:8790";

  class NetPayError extends Error {
    constructor(code, detail, status) {
      super(code + ": " + detail);
      this.name = "NetPayError";
      this.code = code;
      this.detail = detail;
      this.status = status;
    }
  }

  function bridgeBase(options) {
    var base = (options && options.bridge) || DEFAULT_BRIDGE;
    return String(base).replace(/\/+$/, "");
  }

  function absolute(url) {
    return new URL(url, global.location ? global.location.href : undefined).href;
  }

  async function readError(response) {
    var body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    var code = body && typeof body.error === "string" ? body.error : "http_" + response.status;
    var detail = body && typeof body.detail === "string" ? body.detail : "HTTP " + response.status;
    return new NetPayError(code, detail, response.status);
  }

  async function callBridge(options, path, init) {
    var response;
    try {
      response = await fetch(bridgeBase(options) + path, Object.assign({
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        redirect: "error",
      }, init));
    } catch (e) {
      throw new NetPayError(
        "bridge_unreachable",
        "the NetPay wallet bridge is not running, or this site is not approved " +
          "(netpay wallet approve-origin)",
        0
      );
    }
    if (!response.ok) {
      throw await readError(response);
    }
    return response.json();
  }

  /* {authorization, amount, currency, vendor_id, words_left} for one click on url. */
  async function authorize(articleUrl, options) {
    return callBridge(options || {}, "/v1/authorize", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({url: absolute(articleUrl)}),
    });
  }

  /* Whether this site is approved, its caps and today's spending. */
  async function status(options) {
    return callBridge(options || {}, "/v1/status", {method: "GET"});
  }

  /* {authorization, window_url, units, amount, currency, vendor_id} for a window. */
  async function authorizeWindow(siteUrl, units, options) {
    return callBridge(options || {}, "/v1/window", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({url: absolute(siteUrl), units: units}),
    });
  }

  /* Open a window of `units` words at siteUrl's newspaper; resolves to its JSON. */
  async function openWindow(siteUrl, units, options) {
    options = options || {};
    var auth = await authorizeWindow(siteUrl, units, options);
    var response = await fetch(auth.window_url, {
      method: "POST",
      headers: {Authorization: auth.authorization, Accept: "application/json"},
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    });
    if (!response.ok) {
      throw await readError(response);
    }
    var window_ = await response.json();
    window_.netpay = auth;
    return window_;
  }

  /* Pay articleUrl once and fetch it; resolves to the article's Response. */
  async function pay(articleUrl, options) {
    options = options || {};
    var url = absolute(articleUrl);
    var auth = await authorize(url, options);
    var headers = Object.assign({}, options.headers || {}, {Authorization: auth.authorization});
    var response = await fetch(url, {
      method: "GET",
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    });
    response.netpay = auth;
    return response;
  }

  global.NetPay = Object.freeze({
    pay: pay,
    authorize: authorize,
    openWindow: openWindow,
    authorizeWindow: authorizeWindow,
    status: status,
    NetPayError: NetPayError,
    DEFAULT_BRIDGE: DEFAULT_BRIDGE,
  });
})(typeof window !== "undefined" ? window : globalThis);

// The console's entry point: the key, the views and the address bar (#live, #volume,
// #lookup/<kind>/<value>, #status). No view loads data before a key is accepted.

import { authRequired, credential, describeCredential, forgetCredential, get, setCredential, whenUnauthorized } from "./api.js";
import { available as chartsAvailable, charts, resizeAll } from "./charts.js";
import { LiveView } from "./live.js";
import { LookupView } from "./lookup.js";
import { StatusView } from "./status.js";
import { VolumeView } from "./volume.js";

const violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  violations.push(`${event.violatedDirective}: ${event.blockedURI}`);
});

const $ = (selector) => document.querySelector(selector);
const bannerBox = $("#banner");

function banner(text) {
  bannerBox.textContent = text || "";
  bannerBox.hidden = !text;
}

function navigate(hash) {
  if (location.hash !== `#${hash}`) location.hash = hash;
  else route();
}

const context = { banner, navigate };
const views = {
  live: new LiveView($("#view-live"), context),
  volume: new VolumeView($("#view-volume"), context),
  lookup: new LookupView($("#view-lookup"), context),
  status: new StatusView($("#view-status"), context),
};
let signedIn = false;

function showOnly(id) {
  for (const section of document.querySelectorAll("main > .view")) section.hidden = section.id !== id;
}

function route() {
  if (!signedIn) {
    showOnly("signin");
    return;
  }
  const [name, kind, ...rest] = location.hash.replace(/^#/, "").split("/");
  const view = views[name] ? name : "live";
  showOnly(`view-${view}`);
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.classList.toggle("active", tab.dataset.view === view);
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  resizeAll();
  views[view].show();
  if (view === "lookup" && kind && rest.length) views.lookup.open(kind, decodeURIComponent(rest.join("/")));
}

function signedInAs() {
  signedIn = true;
  $("#key-form").hidden = true;
  $("#key-state").hidden = !authRequired;
  $("#key-who").textContent = describeCredential();
  $("#tabs").hidden = false;
  route();
}

function signOut(message) {
  signedIn = false;
  forgetCredential();
  views.live.stop();
  $("#tabs").hidden = true;
  $("#key-state").hidden = true;
  $("#key-form").hidden = false;
  $("#key-input").value = "";
  banner(message);
  route();
}

/** A key is accepted when /health answers with it (any role may read the status). */
async function tryKey(value) {
  setCredential(value);
  try {
    await get("health");
  } catch (error) {
    forgetCredential();
    banner(error.status === 401 ? `The key was refused: ${error.message}` : `Cannot sign in: ${error.message}`);
    return;
  }
  banner(null);
  signedInAs();
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#key-input").value.trim();
  $("#key-input").value = "";
  if (value) tryKey(value);
});
$("#key-forget").addEventListener("click", () => signOut("Key forgotten."));
whenUnauthorized((detail) => signOut(`The app refused the key: ${detail}. Type a valid one.`));
window.addEventListener("hashchange", route);
window.addEventListener("resize", resizeAll);

$("#footer-mode").textContent = authRequired ? "API keys on" : "dev mode: authentication off (loopback only)";
if (!chartsAvailable) banner("Charts are unavailable: console/vendor/ has no uPlot (make install fetches it).");

// What tests (and curious users, in devtools) can read: the charts and their data, CSP reports.
window.obsrvrConsole = { charts, views, violations };

if (!authRequired) {
  $("#key-form").hidden = true;
  signedInAs();
} else if (credential()) {
  signedInAs(); // the key of this tab's session; a 401 on first use signs out
} else {
  route();
}

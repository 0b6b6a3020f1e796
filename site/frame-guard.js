// Pages other than embed.html run only at the top, or in a frame of their own origin. The server and the service
// worker send frame-ancestors 'self' for them, but a host that sends no headers cannot, and a service worker
// does not control a frame inside another site (browsers partition its storage): this check covers both.
// Imported first, it stops the importing page's script when the page is framed by another origin.
function framedByAnotherOrigin() {
  if (window.top === window) return false;
  try {
    return window.top.location.origin !== location.origin; // reading another origin's location throws
  } catch (_) {
    return true;
  }
}

if (framedByAnotherOrigin()) {
  const main = document.createElement("main");
  const text = document.createElement("p");
  text.textContent = "This page does not run inside another site. ";
  const link = document.createElement("a");
  link.href = location.href;
  link.target = "_blank";
  link.rel = "noopener";
  link.textContent = "Open it in its own tab.";
  text.append(link);
  main.append(text);
  document.body.replaceChildren(main);
  throw new Error("pocketmind: framed by another origin; use embed.html to embed the chat");
}

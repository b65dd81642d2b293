// Starts ReDoc on /openapi-public.json (the public routes) from an external file (no inline script, so the CSP holds).
// ReDoc's <style> elements need the nonce the server put in this page's CSP and <meta>.
// Search is off: it runs in a worker made from a blob: URL, which the CSP refuses.
const nonce = document.querySelector('meta[name="style-nonce"]').content;
Redoc.init("/openapi-public.json", { nonce, disableSearch: true }, document.getElementById("redoc"));

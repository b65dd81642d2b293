// Starts Swagger UI on /openapi.json. An external file, not an inline <script>, so the page's
// Content-Security-Policy (script-src 'self') holds.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validator badge fetches from validator.swagger.io: no request to other hosts.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});

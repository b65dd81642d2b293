// Starts Swagger UI on /openapi-public.json (the public routes; /openapi.json has the workers'
// too). An external file, not an inline <script>, so the page's Content-Security-Policy
// (script-src 'self') holds.
window.ui = SwaggerUIBundle({
  url: "/openapi-public.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validator badge fetches from validator.swagger.io: no request to other hosts.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
